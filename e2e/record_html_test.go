package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"image"
	"image/png"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyglass/pyglass/internal/testenv"
	"github.com/pyglass/pyglass/profile"
)

// TestRecordHTML: with no -o and no --format, record writes an .html page
// named after the PID and prints its path, on every interpreter; the page
// holds the profile (read back and checked as speedscope's format) and
// names nothing else to load. On three interpreters that one file, opened
// offline in a real browser (Debian's chromium, headless), shows the
// profile: the flame graph drawn, the sampled functions listed with their
// shares, no script error.
func TestRecordHTML(t *testing.T) {
	if profile.Viewer() == "" {
		testenv.Skipf(t, "the HTML viewer is not built in: run scripts/fetch-viewer.sh, then the tests")
	}
	inBrowser := map[string]bool{"2.7": true, "3.12": true, "3.15-chroot": true}
	testenv.ForEach(t, func(t *testing.T, in testenv.Interp) {
		tg := testenv.Start(t, in, testenv.Fixture(t, "profile_target.py"))
		dir := t.TempDir()
		pid := strconv.Itoa(tg.PID)
		r := runInDir(t, dir, "record", pid, "--duration", "1s", "--rate", "200")
		want(t, r, 0)
		m := regexp.MustCompile(`profile written to (\S+) \(html`).FindStringSubmatch(r.Stderr)
		if m == nil {
			t.Fatalf("record without -o or --format does not say it wrote an html page:\n%s", r.Stderr)
		}
		page := m[1]
		if filepath.Dir(page) != dir || !regexp.MustCompile(`^pyglass-`+pid+`-[0-9]{8}-[0-9]{6}\.html$`).MatchString(filepath.Base(page)) {
			t.Fatalf("default output %s, want %s/pyglass-%s-TIME.html", page, dir, pid)
		}
		checkSpeedscope(t, checkHTMLPage(t, page), false)
		healthy(t, tg)
		if inBrowser[in.Label] {
			t.Run("chromium", func(t *testing.T) {
				openInBrowser(t, findChromium(t), page, "pyglass record "+pid+" at ")
			})
		}
	})
}

// findChromium returns the headless browser the test uses, or skips.
func findChromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Skipf(t, "no chromium on PATH to open the page (apt-get install chromium)")
	return ""
}

// runInDir runs pyglass in dir.
func runInDir(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return runBin(t, testenv.BuildPyglass(t), dir, time.Minute, nil, args...)
}

var (
	scriptElem = regexp.MustCompile(`(?is)<script\b[^>]*>.*?</script>`)
	// linkAttr is an attribute or style that makes a browser load something.
	linkAttr = regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*["']?([^"'\s>]*)|url\(\s*["']?([^"')]*)`)
)

// checkHTMLPage: one file that names nothing else to load (every
// reference is a data: URL), is not much bigger than the viewer, and
// holds the profile: speedscope's JSON, gzipped, in base64.
// It returns the inlined profile, written to a file.
func checkHTMLPage(t *testing.T, path string) (inlined string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.HasPrefix(s, "<!DOCTYPE html>") {
		t.Fatalf("%s does not start as an HTML page: %q", path, s[:min(len(s), 80)])
	}
	if n := len(scriptElem.FindAllString(s, -1)); n != 3 {
		t.Errorf("the page has %d script elements, want 3 (the profile, the loader, the viewer)", n)
	}
	// Outside the scripts (whose code may name URLs to link to).
	for _, m := range linkAttr.FindAllStringSubmatch(scriptElem.ReplaceAllString(s, ""), -1) {
		ref := m[1] + m[2]
		if !strings.HasPrefix(ref, "data:") {
			t.Errorf("the page loads %q: not self-contained", ref)
		}
	}
	m := regexp.MustCompile(`(?s)<script type="text/plain" id="pyglass-profile">(.*?)</script>`).FindStringSubmatch(s)
	if m == nil {
		t.Fatal("no profile in the page")
	}
	z, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(m[1]), ""))
	if err != nil {
		t.Fatalf("the page's profile is not base64: %v", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatalf("the page's profile is not gzipped: %v", err)
	}
	js, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("the page's profile: %v", err)
	}
	ss := filepath.Join(t.TempDir(), "inlined.json")
	if err := os.WriteFile(ss, js, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(b) > 1<<20 {
		t.Errorf("the page of a 1 s profile is %d bytes", len(b))
	}
	t.Logf("%s: %d bytes", filepath.Base(path), len(b))
	return ss
}

// openInBrowser opens the page in headless chromium twice, with no
// network: the DOM of its sandwich view (a table of the functions) and a
// screenshot of its flame graph. speedscope titles the page after the
// profile: title. Every console message is read: none may
// be a script error or a failed load, and speedscope must say it imported
// the profile.
func openInBrowser(t *testing.T, browser, page, title string) {
	t.Helper()
	url := "file://" + page

	dom, log := chromium(t, browser, "--dump-dom", url+"#view=sandwich")
	checkConsole(t, log)
	text := domText(scriptElem.ReplaceAllString(dom, ""))
	for _, bad := range []string{"Something went wrong", "Welcome to", "Drag and drop"} {
		if strings.Contains(strings.Join(text, " "), bad) {
			t.Fatalf("the page shows %q, not the profile:\n%q", bad, text)
		}
	}
	if !regexp.MustCompile(`<title>` + regexp.QuoteMeta(title)).MatchString(dom) {
		t.Errorf("the page is not titled %q...: %q", title, regexp.MustCompile(`<title>[^<]*`).FindString(dom))
	}
	// The sandwich table: a row is total, self, function name. a (70 %
	// of the work) must come out above b (30 %).
	share := map[string]float64{}
	pct := regexp.MustCompile(`\(([0-9.]+)%\)$`)
	for i := 2; i < len(text); i++ {
		if m := pct.FindStringSubmatch(text[i-2]); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			share[text[i]] = max(share[text[i]], v)
		}
	}
	if share["a"] == 0 || share["b"] == 0 || share["spin"] == 0 || share["a"] <= share["b"] {
		t.Fatalf("the sandwich view does not list a, b and spin with a above b: %v\n%q", share, text)
	}

	shot := filepath.Join(t.TempDir(), "shot.png")
	_, log = chromium(t, browser, "--window-size=1200,800", "--screenshot="+shot, url)
	checkConsole(t, log)
	checkFlameGraph(t, shot)
}

// chromium runs the headless browser on args, bounded, and returns its
// stdout and its log (stderr).
func chromium(t *testing.T, browser string, args ...string) (stdout, log string) {
	t.Helper()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
		"--user-data-dir=" + t.TempDir(), "--no-first-run", "--disable-extensions",
		"--enable-logging=stderr", "--v=0",
		// Offline: no name resolves.
		"--host-resolver-rules=MAP * ~NOTFOUND",
		// Timers run until the page is idle (speedscope imports the
		// profile after a timeout), up to 20 s of page time.
		"--virtual-time-budget=20000",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The browser's helper processes go with it.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", browser, args, err, errb.String())
	}
	return out.String(), errb.String()
}

// consoleLine is a message of the page's console in chromium's log:
// `[...:INFO:CONSOLE:12] "message", source: file:///x.html (12)`.
var consoleLine = regexp.MustCompile(`:CONSOLE[:(][0-9]*\)?\] "(.*)", source: `)

func checkConsole(t *testing.T, log string) {
	t.Helper()
	imported := false
	bad := regexp.MustCompile(`(?i)uncaught|error|exception|failed|not allowed|refused|cannot`)
	for _, l := range strings.Split(log, "\n") {
		m := consoleLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if strings.Contains(m[1], "Importing as speedscope json file") {
			imported = true
		}
		if bad.MatchString(m[1]) {
			t.Errorf("the page's console: %s", m[1])
		}
	}
	if !imported {
		t.Fatalf("speedscope never said it imported the profile; browser log:\n%s", log)
	}
}

// domText returns the text nodes of an HTML document, trimmed, in order.
func domText(html string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`>([^<]+)<`).FindAllStringSubmatch(html, -1) {
		if s := strings.TrimSpace(strings.ReplaceAll(m[1], "&lt;", "<")); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// checkFlameGraph: the screenshot's flame chart area (below the toolbar
// and the minimap) is largely covered by the colored bars of the frames,
// in several colors; the landing page or an error message is white with
// text.
func checkFlameGraph(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	bnd := img.Bounds()
	area := image.Rect(bnd.Min.X, bnd.Min.Y+bnd.Dy()/6, bnd.Max.X, bnd.Max.Y)
	colored := 0
	hues := map[[3]uint32]int{}
	for y := area.Min.Y; y < area.Max.Y; y++ {
		for x := area.Min.X; x < area.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			r, g, b = r>>8, g>>8, b>>8
			if max(r, g, b)-min(r, g, b) < 24 {
				continue // white, black, gray: background, text, lines
			}
			colored++
			hues[[3]uint32{r >> 5, g >> 5, b >> 5}]++
		}
	}
	total := area.Dx() * area.Dy()
	big := 0
	for _, n := range hues {
		if n*200 >= total {
			big++
		}
	}
	if colored*5 < total || big < 3 {
		t.Fatalf("no flame graph drawn: %d of %d pixels colored, %d colors on 0.5%% or more (want 20%% and 3)", colored, total, big)
	}
}

// TestRecordHTMLWithoutViewer: pyglass built from a tree without the
// fetched viewer still builds; there --format html and -o x.html fail at
// once with one line and the hint to fetch it, the default stays
// speedscope JSON, and the help says why.
func TestRecordHTMLWithoutViewer(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		testenv.Skipf(t, "no go command on PATH to build pyglass without the viewer")
	}
	root := testenv.RepoRoot(t)
	src := filepath.Join(t.TempDir(), "src")
	// The tree as it is, minus .git (and other hidden directories) and
	// the fetched viewer.
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if (d.IsDir() && rel != "." && strings.HasPrefix(d.Name(), ".")) || (filepath.Dir(rel) == filepath.Join("profile", "viewer") && d.Name() != "README.md") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := filepath.Join(src, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(dst, b, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "pyglass")
	build := exec.Command(goBin, "build", "-o", bin, "./cmd/pyglass")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("pyglass does not build without the viewer: %v\n%s", err, out)
	}

	in, ok := testenv.Lookup("3.12")
	if !ok {
		ins := testenv.Interpreters()
		if len(ins) == 0 {
			testenv.Skipf(t, "no Python interpreter on this machine")
		}
		in = ins[0]
	}
	tg := testenv.Start(t, in, testenv.Fixture(t, "profile_target.py"))
	pid := strconv.Itoa(tg.PID)
	dir := t.TempDir()
	for _, args := range [][]string{{"--format", "html"}, {"-o", "x.html"}} {
		r := runBin(t, bin, dir, time.Minute, nil, append([]string{"record", pid, "--duration", "1s"}, args...)...)
		want(t, r, 2)
		oneLineErr(t, r, "scripts/fetch-viewer.sh")
		if r.Took > 5*time.Second {
			t.Errorf("%v: the error came after %s, not before sampling", args, r.Took)
		}
	}
	r := runBin(t, bin, dir, time.Minute, nil, "help", "record")
	want(t, r, 0)
	help := strings.Join(strings.Fields(r.Stdout+r.Stderr), " ")
	if !strings.Contains(help, "built without the viewer, so the default is speedscope") || !strings.Contains(help, "default: pyglass-PID-TIME.json") {
		t.Errorf("help record does not say the default is speedscope and why:\n%s", r.Stdout+r.Stderr)
	}
	r = runBin(t, bin, dir, time.Minute, nil, "record", pid, "--duration", "1s", "--rate", "200")
	want(t, r, 0)
	m := regexp.MustCompile(`profile written to (pyglass-` + pid + `-\S+\.json) \(speedscope\)`).FindStringSubmatch(r.Stderr)
	if m == nil {
		t.Fatalf("without the viewer the default is not speedscope JSON:\n%s", r.Stderr)
	}
	checkSpeedscope(t, filepath.Join(dir, m[1]), false)
	healthy(t, tg)
}

// hostileNamesTarget runs its time in a function whose name and file name
// are markup: a target controls them.
const hostileNamesTarget = `import sys
evil = "</script><img src=x onerror=\"document.title='PWNED'\"><b>bold</b>"


def hot():
    while True:
        for i in range(10000):
            pass


c = hot.__code__
hot.__code__ = c.replace(co_name=evil, co_qualname=evil, co_filename="<!--" + evil + ".py")
print("READY")
sys.stdout.flush()
hot()
`

// TestRecordHTMLHostileNames: names read from a target reach the page only
// as data: chromium shows the markup of a function's name as text, in the
// sandwich view's table, and runs none of it (no element is made of it;
// the page keeps its title).
func TestRecordHTMLHostileNames(t *testing.T) {
	if profile.Viewer() == "" {
		testenv.Skipf(t, "the HTML viewer is not built in: run scripts/fetch-viewer.sh, then the tests")
	}
	forLabels(t, []string{"3.12"}, func(t *testing.T, in testenv.Interp) {
		browser := findChromium(t)
		tg := testenv.Start(t, in, hostileNamesTarget)
		page := filepath.Join(t.TempDir(), "p.html")
		want(t, run(t, nil, "record", strconv.Itoa(tg.PID), "--duration", "1s", "--rate", "200", "-o", page), 0)
		checkHTMLPage(t, page)
		dom, log := chromium(t, browser, "--dump-dom", "file://"+page+"#view=sandwich")
		checkConsole(t, log)
		dom = scriptElem.ReplaceAllString(dom, "")
		if regexp.MustCompile(`(?i)<img|<b>bold`).MatchString(dom) {
			t.Fatalf("the function's name became markup in the page:\n%s", dom)
		}
		if !strings.Contains(dom, "<title>pyglass record ") {
			t.Errorf("the page's title changed: %q", regexp.MustCompile(`<title>[^<]*`).FindString(dom))
		}
		if !strings.Contains(dom, "&lt;/script&gt;&lt;img src=x onerror=") {
			t.Fatalf("the sandwich view does not show the function's name as text:\n%q", domText(dom))
		}
		healthy(t, tg)
	})
}
