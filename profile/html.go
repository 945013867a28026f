package profile

import (
	"bytes"
	"compress/gzip"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"strings"
	"sync"
)

// The viewer the HTML format embeds: speedscope's release bundle, which
// scripts/fetch-viewer.sh puts in viewer/ (git-ignored; only its README is
// committed, so that this compiles without it).
//
//go:embed viewer
var viewerFS embed.FS

// ErrNoViewer is WriteHTML's error when pyglass was built without the
// viewer; ViewerHint says what to do.
var ErrNoViewer = errors.New("this pyglass was built without the HTML flame graph viewer (speedscope)")

// ViewerHint says how to build the viewer in.
const ViewerHint = "run scripts/fetch-viewer.sh in pyglass's source tree, then rebuild pyglass"

// Viewer names the viewer built in, like "speedscope 1.25.0", or returns
// "" when there is none (then the HTML format fails with ViewerErr).
func Viewer() string {
	v, err := loadViewer()
	if err != nil {
		return ""
	}
	return v.version
}

// viewerBuiltIn reports whether the viewer's bundle is built in, without
// building the page.
func viewerBuiltIn() bool {
	_, err := fs.Stat(viewerFS, "viewer/speedscope.js")
	return err == nil
}

// ViewerErr says why the HTML format cannot be written: ErrNoViewer when
// pyglass was built without the viewer, another error when the files built
// in cannot make a page; nil when it can.
func ViewerErr() error {
	_, err := loadViewer()
	return err
}

// viewer is the static part of the HTML page, built once.
type viewer struct {
	version string
	head    []byte // up to the profile's data
	tail    []byte // the bundle, after the loader
}

var (
	viewerOnce sync.Once
	viewerPage *viewer
	viewerErr  error
)

func loadViewer() (*viewer, error) {
	viewerOnce.Do(func() { viewerPage, viewerErr = buildViewer(viewerFS, "viewer") })
	return viewerPage, viewerErr
}

// buildViewer makes the page's static parts from the files of dir in fsys.
func buildViewer(fsys fs.FS, dir string) (*viewer, error) {
	// (built here, once, not when pyglass starts)
	// cssURL matches the bundle's references to its files: url("./x.woff2").
	cssURL := regexp.MustCompile(`url\(["']?\./([A-Za-z0-9._-]+)["']?\)`)
	// sourceMap matches the source map comment ending a bundled file (the
	// map is not shipped).
	sourceMap := regexp.MustCompile(`(?m)^(//# sourceMappingURL=\S+|/\*# sourceMappingURL=\S+ \*/)\s*$`)
	read := func(name string) (string, error) {
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		return string(b), err
	}
	js, err := read("speedscope.js")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoViewer
	}
	if err != nil {
		return nil, err
	}
	version, _ := read("VERSION")
	css, _ := read("speedscope.css")
	icon, _ := read("favicon.png")
	lic, _ := read("LICENSE")
	fontLic, _ := read("source-code-pro.LICENSE.md")
	version = strings.TrimSpace(version)
	if version == "" {
		version = "speedscope"
	}
	js = sourceMap.ReplaceAllString(js, "")
	css = sourceMap.ReplaceAllString(css, "")
	// The font (and any other file the style sheet names) inlined.
	var cssErr error
	css = cssURL.ReplaceAllStringFunc(css, func(m string) string {
		name := cssURL.FindStringSubmatch(m)[1]
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			cssErr = fmt.Errorf("the viewer's style sheet names %s: %w", name, err)
			return m
		}
		return `url("` + dataURL(name, b) + `")`
	})
	if cssErr != nil {
		return nil, cssErr
	}
	// Inlined as they are, the bundle and the style sheet must not end
	// their element early; the license texts must not end their comment.
	lower := strings.ToLower(js)
	if strings.Contains(lower, "</script") || strings.Contains(lower, "<!--") || strings.Contains(strings.ToLower(css), "</style") {
		return nil, fmt.Errorf("%s: the bundle cannot be inlined in a page as it is", version)
	}
	notice := "pyglass profile, shown by " + version + " (https://github.com/jlfwong/speedscope), inlined with its licenses:\n\n" + lic + "\n\nThe Source Code Pro font:\n\n" + fontLic
	if strings.Contains(notice, "-->") || strings.Contains(notice, "--!>") {
		return nil, fmt.Errorf("%s: its license text cannot be put in a comment", version)
	}

	var h bytes.Buffer
	h.WriteString("<!DOCTYPE html>\n<!--\n" + notice + "\n-->\n")
	h.WriteString(`<html>
<head>
<meta charset="UTF-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>pyglass profile</title>
`)
	if icon != "" {
		h.WriteString(`<link rel="icon" type="image/png" href="` + dataURL("favicon.png", []byte(icon)) + "\">\n")
	}
	h.WriteString("<style>\n" + css + "\n</style>\n</head>\n<body>\n")
	h.WriteString(`<script type="text/plain" id="pyglass-profile">`)

	var t bytes.Buffer
	t.WriteString("</script>\n<script>\n" + loaderJS + "</script>\n")
	// The bundle renders the app in place of the last element of the
	// body, which is its own script element (as in its index.html).
	t.WriteString("<script>\n" + js + "\n</script>\n</body>\n</html>\n")
	return &viewer{version: version, head: h.Bytes(), tail: t.Bytes()}, nil
}

// loaderJS gives speedscope the profile inlined in the page. speedscope
// loads a local profile (its command line tool does so) from the hash
// parameter localProfilePath: it defines speedscope.loadFileFromBase64,
// then appends a script with that path, whose code calls it with the
// file's name and content. The loader sets the parameter before the
// bundle runs and answers that script from the page instead of a file:
// nothing is fetched, and the page works offline. Other hash parameters
// (#view=sandwich) are kept.
const loaderJS = `(function () {
  "use strict";
  var marker = "pyglass-inline-profile";
  var hash = location.hash;
  var base = location.href.split("#")[0];
  var want = "#localProfilePath=" + marker + (hash.length > 1 ? "&" + hash.slice(1) : "");
  function setHash(h) {
    try {
      history.replaceState(history.state, "", base + h);
    } catch (e) {
      location.replace(h || "#");
    }
  }
  setHash(want);
  var head = document.head;
  head.appendChild = function (node) {
    if (node && node.tagName === "SCRIPT" && node.src.slice(-marker.length) === marker) {
      delete head.appendChild;
      setHash(hash);
      var data = document.getElementById("pyglass-profile").textContent.replace(/\s+/g, "");
      // Called later, as the script it stands for would run.
      setTimeout(function () {
        window.speedscope.loadFileFromBase64("pyglass.speedscope.json", data);
      }, 0);
      return node;
    }
    return Node.prototype.appendChild.call(this, node);
  };
})();
`

// dataURL inlines a file in a data: URL.
func dataURL(name string, b []byte) string {
	mime := "application/octet-stream"
	switch path.Ext(name) {
	case ".woff2":
		mime = "font/woff2"
	case ".png":
		mime = "image/png"
	case ".ico":
		mime = "image/x-icon"
	}
	return "data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(b)
}

// WriteHTML writes one self-contained HTML page that shows the profile as
// an interactive flame graph, offline: the viewer built in (speedscope)
// with the profile inlined as gzipped speedscope JSON, base64-encoded, so
// nothing read from a target reaches the page as markup or code. It fails
// with ErrNoViewer when pyglass was built without the viewer.
func (p *Profile) WriteHTML(w io.Writer) error {
	v, err := loadViewer()
	if err != nil {
		return err
	}
	var z bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&z, gzip.DefaultCompression)
	if err := p.WriteSpeedscope(gz); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	if _, err := w.Write(v.head); err != nil {
		return err
	}
	// Lines of 76 characters, as MIME has them: an editor opens the file.
	enc := base64.StdEncoding.EncodeToString(z.Bytes())
	line := make([]byte, 0, 77)
	for len(enc) > 0 {
		n := min(76, len(enc))
		line = append(append(line[:0], enc[:n]...), '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
		enc = enc[n:]
	}
	_, err = w.Write(v.tail)
	return err
}
