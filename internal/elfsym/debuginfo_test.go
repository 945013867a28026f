package elfsym

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ulikunitz/xz"
)

// xzOf compresses b with xz.
func xzOf(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestParseDebugLink: a well-formed link gives its name and CRC; a name
// with a slash, an empty or unterminated one, or a missing CRC none.
func TestParseDebugLink(t *testing.T) {
	for _, tc := range []struct {
		in   string
		name string
		crc  uint32
		ok   bool
	}{
		{"lib.debug\x00\x00\x00\x04\x03\x02\x01", "lib.debug", 0x01020304, true},
		{"abc\x00\x01\x00\x00\x00", "abc", 1, true},
		{"abc\x00\x01\x00\x00", "", 0, false},
		{"../etc/x\x00\x00\x00\x00\x00\x00\x00\x00", "", 0, false},
		{"..\x00\x00\x01\x00\x00\x00", "", 0, false},
		{"\x00\x00\x00\x00\x01\x00\x00\x00", "", 0, false},
		{"noend", "", 0, false},
		{"", "", 0, false},
	} {
		name, crc, ok := parseDebugLink([]byte(tc.in))
		if name != tc.name || crc != tc.crc || ok != tc.ok {
			t.Errorf("parseDebugLink(%q) = %q, %#x, %v; want %q, %#x, %v", tc.in, name, crc, ok, tc.name, tc.crc, tc.ok)
		}
	}
}

// TestMiniDebugInfoBad: a file without .gnu_debugdata says so; one whose
// .gnu_debugdata is no xz data, or xz data that is no ELF file, gives an
// error (objcopy adds the sections to a copy of /bin/true).
func TestMiniDebugInfoBad(t *testing.T) {
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		t.Skip("no objcopy to add a .gnu_debugdata section")
	}
	plain := "/bin/true"
	fh, err := os.Open(plain)
	if err != nil {
		t.Skip("no /bin/true")
	}
	e, err := Open(fh)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.MiniDebugInfo(); !errors.Is(err, ErrNoDebugData) {
		t.Errorf("%s: MiniDebugInfo: %v, want ErrNoDebugData", plain, err)
	}
	fh.Close()
	dir := t.TempDir()
	// xz's magic, then garbage; and xz data that is no ELF file.
	for name, data := range map[string][]byte{
		"garbage": append([]byte("\xfd7zXZ\x00"), make([]byte, 64)...),
		"notelf":  xzOf(t, []byte("not an ELF file")),
	} {
		sec, out := filepath.Join(dir, name), filepath.Join(dir, name+".elf")
		if err := os.WriteFile(sec, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command(objcopy, "--add-section", ".gnu_debugdata="+sec, plain, out).CombinedOutput(); err != nil {
			t.Fatalf("objcopy: %v: %s", err, b)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Open(f)
		if err != nil {
			t.Fatal(err)
		}
		if d, err := e.MiniDebugInfo(); err == nil || errors.Is(err, ErrNoDebugData) {
			t.Errorf("%s: MiniDebugInfo = %v, %v; want an error", name, d, err)
		}
		f.Close()
	}
}

// TestSectionDataCompressed: a compressed debug section (as debug files
// often have them) is read decompressed, within the limit asked.
func TestSectionDataCompressed(t *testing.T) {
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		t.Skip("no objcopy to add a compressed section")
	}
	dir := t.TempDir()
	want := bytes.Repeat([]byte("debug frame bytes "), 500)
	sec, plain, out := filepath.Join(dir, "sec"), filepath.Join(dir, "plain"), filepath.Join(dir, "compressed")
	if err := os.WriteFile(sec, want, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--add-section", ".debug_frame=" + sec, "/bin/true", plain},
		{"--compress-debug-sections=zlib", plain, out},
	} {
		if b, err := exec.Command(objcopy, args...).CombinedOutput(); err != nil {
			t.Skipf("objcopy %v: %v: %s", args, err, b)
		}
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e, err := Open(f)
	if err != nil {
		t.Fatal(err)
	}
	if s := e.f.Section(".debug_frame"); s == nil || s.Flags&elf.SHF_COMPRESSED == 0 {
		t.Fatalf("objcopy did not compress the section: %+v", s)
	}
	got, err := e.SectionData(".debug_frame", uint64(len(want)))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("SectionData = %d bytes, %v; want the %d bytes written", len(got), err, len(want))
	}
	if _, err := e.SectionData(".debug_frame", uint64(len(want)-1)); err == nil {
		t.Errorf("SectionData past its limit: no error")
	}
}
