package profile

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

// TestHTML: the page holds the speedscope JSON of the profile, gzipped and
// base64-encoded, so names read from a target (hostile: markup, a script
// end tag) never reach the page as markup or code.
func TestHTML(t *testing.T) {
	if Viewer() == "" {
		t.Skip("the HTML viewer is not built in: run scripts/fetch-viewer.sh")
	}
	p := sample(false)
	evil := Frame{`</script><script>alert(1)</script>`, `<!--x.py`, 7}
	p.Add(Thread{PID: 1, TID: 3, Name: `</SCRIPT>`}, []Frame{evil}, time.Unix(1000, 0))
	var page bytes.Buffer
	if err := p.Write(&page, HTML); err != nil {
		t.Fatal(err)
	}
	s := page.String()
	if strings.Contains(s, "alert(1)") || strings.Count(strings.ToLower(s), "</script>") != 3 || strings.Count(s, "<script") != 3 {
		t.Fatalf("the page's scripts are not the three pyglass writes (%d openings, %d ends)", strings.Count(s, "<script"), strings.Count(strings.ToLower(s), "</script>"))
	}
	m := regexp.MustCompile(`(?s)<script type="text/plain" id="pyglass-profile">(.*?)</script>`).FindStringSubmatch(s)
	if m == nil {
		t.Fatal("no profile in the page")
	}
	z, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(m[1]), ""))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := p.Write(&want, Speedscope); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("the page's profile is not the speedscope JSON:\n%s\nwant\n%s", got, want.Bytes())
	}
	if f, ok := FormatFromPath("x.html"); !ok || f != HTML || HTML.Ext() != ".html" || DefaultFormat() != HTML {
		t.Errorf("x.html: %v %v; ext %s; default %s", f, ok, HTML.Ext(), DefaultFormat())
	}
}

// TestViewerMissing: without the fetched files (only the committed
// README) the HTML format is ErrNoViewer; a bundle that would end its
// script element early is refused.
func TestViewerMissing(t *testing.T) {
	fsys := fstest.MapFS{"viewer/README.md": {Data: []byte("placeholder")}}
	if _, err := buildViewer(fsys, "viewer"); !errors.Is(err, ErrNoViewer) {
		t.Fatalf("without the bundle: %v, want ErrNoViewer", err)
	}
	fsys["viewer/speedscope.js"] = &fstest.MapFile{Data: []byte(`console.log("</SCRIPT>")`)}
	if _, err := buildViewer(fsys, "viewer"); err == nil || errors.Is(err, ErrNoViewer) {
		t.Fatalf("a bundle with a script end tag: %v", err)
	}
	fsys["viewer/speedscope.js"] = &fstest.MapFile{Data: []byte("app()\n//# sourceMappingURL=x.js.map\n")}
	fsys["viewer/speedscope.css"] = &fstest.MapFile{Data: []byte(`@font-face{src:url("./f.woff2")}`)}
	fsys["viewer/f.woff2"] = &fstest.MapFile{Data: []byte("font")}
	v, err := buildViewer(fsys, "viewer")
	if err != nil {
		t.Fatal(err)
	}
	page := string(v.head) + string(v.tail)
	if !strings.Contains(page, `url("data:font/woff2;base64,Zm9udA==")`) || strings.Contains(page, "sourceMappingURL") || !strings.Contains(page, "app()") {
		t.Fatalf("page:\n%s", page)
	}
}

// TestDefaultFormatBuildsNothing: choosing the default format looks for
// the bundle without building the page (record --format collapsed spent
// 15 ms of CPU building it), and agrees with what building says.
func TestDefaultFormatBuildsNothing(t *testing.T) {
	viewerOnce, viewerPage, viewerErr = sync.Once{}, nil, nil
	def := DefaultFormat()
	if viewerPage != nil || viewerErr != nil {
		t.Fatalf("DefaultFormat built the viewer's page")
	}
	if want := map[bool]Format{true: HTML, false: Speedscope}[ViewerErr() == nil]; def != want {
		t.Errorf("default %s; building the page says %v", def, ViewerErr())
	}
}
