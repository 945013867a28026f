package pyproc

import (
	"fmt"
	"strconv"

	"github.com/pyglass/pyglass/cpython/layout"
)

// Version is a CPython version.
type Version struct {
	Major, Minor, Micro int
	// Level is "alpha", "beta", "candidate" or "final".
	Level  string
	Serial int
}

// String returns the version as PY_VERSION spells it: "3.11.7",
// "3.13.0rc1".
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
	switch v.Level {
	case "alpha":
		s += "a" + strconv.Itoa(v.Serial)
	case "beta":
		s += "b" + strconv.Itoa(v.Serial)
	case "candidate":
		s += "rc" + strconv.Itoa(v.Serial)
	}
	return s
}

// AtLeast reports whether v is major.minor or later.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

// Supported reports whether pyglass supports v (layout.Supported: 2.7 and
// 3.6 to 3.15).
func (v Version) Supported() bool {
	return layout.Supported(v.Major, v.Minor)
}

// Newer reports whether v is a 3.x newer than every supported version.
// Such an interpreter is not refused on sight: pyglass attaches to it and
// reads it with the structure offsets it publishes (_Py_DebugOffsets, see
// layout.ForTarget) when they pass its checks.
func (v Version) Newer() bool { return v.Major == 3 && v.Minor >= 13 && !v.Supported() }

// DecodeHex decodes a PY_VERSION_HEX value (the Py_Version symbol):
// major<<24 | minor<<16 | micro<<8 | level<<4 | serial.
func DecodeHex(h uint32) (Version, error) {
	v := Version{Major: int(h >> 24), Minor: int(h >> 16 & 0xff), Micro: int(h >> 8 & 0xff), Serial: int(h & 0xf)}
	switch h >> 4 & 0xf {
	case 0xa:
		v.Level = "alpha"
	case 0xb:
		v.Level = "beta"
	case 0xc:
		v.Level = "candidate"
	case 0xf:
		v.Level = "final"
	default:
		return Version{}, fmt.Errorf("decoding version %#x: bad release level", h)
	}
	if v.Major < 2 || v.Major > 3 || v.Minor > 99 {
		return Version{}, fmt.Errorf("decoding version %#x: implausible", h)
	}
	return v, nil
}

// ParseVersion parses a PY_VERSION string such as "3.12.1" or "3.14.0b2".
func ParseVersion(s string) (Version, error) {
	parts, ok := splitVersion(s)
	if !ok {
		return Version{}, fmt.Errorf("parsing version %q: not X.Y.Z", s)
	}
	v := Version{Major: parts.major, Minor: parts.minor, Micro: parts.micro, Level: "final"}
	switch parts.level {
	case "a":
		v.Level, v.Serial = "alpha", parts.serial
	case "b":
		v.Level, v.Serial = "beta", parts.serial
	case "rc":
		v.Level, v.Serial = "candidate", parts.serial
	}
	return v, nil
}
