package pyproc

import "testing"

func TestVersionStrings(t *testing.T) {
	data := []byte("\x00/opt/py/versions/3.9.18\x00GCC 12.2.0\x00zlib 1.2.13\x0013.9.1\x00v.3.1.2\x00Python-2.7.18\x003.14.0rc1\x00abc")
	got := versionStrings(data, 10)
	want := []string{"3.9.18", "1.2.13", "2.7.18", "3.14.0rc1"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if n := len(versionStrings(data, 2)); n != 2 {
		t.Errorf("limit 2 gave %d strings", n)
	}
}

func TestParseAndDecodeVersion(t *testing.T) {
	for _, c := range []struct {
		s   string
		hex uint32
	}{
		{"3.11.7", 0x030b07f0},
		{"3.13.0rc1", 0x030d00c1},
		{"3.14.0b2", 0x030e00b2},
		{"3.15.0a1", 0x030f00a1},
	} {
		v, err := ParseVersion(c.s)
		if err != nil || v.String() != c.s {
			t.Errorf("ParseVersion(%q) = %v, %v", c.s, v, err)
		}
		d, err := DecodeHex(c.hex)
		if err != nil || d != v {
			t.Errorf("DecodeHex(%#x) = %+v, %v; want %+v", c.hex, d, err, v)
		}
	}
	if v, _ := ParseVersion("2.7.18"); !v.Supported() {
		t.Error("2.7 unsupported")
	}
	for _, s := range []string{"3.5.10", "2.6.9", "3.16.0"} {
		if v, _ := ParseVersion(s); v.Supported() {
			t.Errorf("%s supported", s)
		}
	}
	for s, newer := range map[string]bool{"3.16.0": true, "3.20.1": true, "3.14.2": false, "3.5.10": false, "2.7.18": false} {
		if v, _ := ParseVersion(s); v.Newer() != newer {
			t.Errorf("%s newer: %v, want %v", s, v.Newer(), newer)
		}
	}
	for _, bad := range []string{"3.11", "x3.1.1", "3.1.1-dev"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) succeeded", bad)
		}
	}
	if _, err := DecodeHex(0x030b0700); err == nil {
		t.Error("DecodeHex accepted level 0")
	}
}
