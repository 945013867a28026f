package profile

import (
	"compress/gzip"
	"io"
)

// pprofEncoder writes pprof's profile.proto (github.com/google/pprof,
// proto/profile.proto) by hand: the few messages a sampled profile uses.
// google/pprof's own package compiles some thirty regular expressions for
// legacy formats in its initialisers, which every run of pyglass paid
// (0.3 to 0.9 ms of `pyglass version`); the tests read what this writes
// back with that package and compare it with what it writes.
type pprofEncoder struct {
	buf     []byte
	strings map[string]int64
	table   []string
}

// The field numbers of profile.proto.
const (
	pbProfileSampleType        = 1
	pbProfileSample            = 2
	pbProfileLocation          = 4
	pbProfileFunction          = 5
	pbProfileStringTable       = 6
	pbProfileTimeNanos         = 9
	pbProfileDurationNanos     = 10
	pbProfilePeriodType        = 11
	pbProfilePeriod            = 12
	pbProfileDefaultSampleType = 14

	pbValueTypeType = 1
	pbValueTypeUnit = 2

	pbSampleLocationID = 1
	pbSampleValue      = 2
	pbSampleLabel      = 3

	pbLabelKey = 1
	pbLabelStr = 2
	pbLabelNum = 3

	pbLocationID   = 1
	pbLocationLine = 4

	pbLineFunctionID = 1
	pbLineLine       = 2

	pbFunctionID         = 1
	pbFunctionName       = 2
	pbFunctionSystemName = 3
	pbFunctionFilename   = 4
)

func newPprofEncoder() *pprofEncoder {
	return &pprofEncoder{strings: map[string]int64{"": 0}, table: []string{""}}
}

// str is s's index in the string table (0 is "").
func (e *pprofEncoder) str(s string) int64 {
	i, ok := e.strings[s]
	if !ok {
		i = int64(len(e.table))
		e.strings[s] = i
		e.table = append(e.table, s)
	}
	return i
}

func (e *pprofEncoder) varint(x uint64) {
	for x >= 0x80 {
		e.buf = append(e.buf, byte(x)|0x80)
		x >>= 7
	}
	e.buf = append(e.buf, byte(x))
}

// int64 writes a varint field, left out when zero (proto3).
func (e *pprofEncoder) int64(field int, x int64) {
	if x == 0 {
		return
	}
	e.varint(uint64(field) << 3)
	e.varint(uint64(x))
}

func (e *pprofEncoder) bytes(field int, b []byte) {
	e.varint(uint64(field)<<3 | 2)
	e.varint(uint64(len(b)))
	e.buf = append(e.buf, b...)
}

// message writes field as a length-delimited message whose body fill
// writes.
func (e *pprofEncoder) message(field int, fill func()) {
	outer := e.buf
	e.buf = nil
	fill()
	body := e.buf
	e.buf = outer
	e.bytes(field, body)
}

// packed writes xs as one packed repeated varint field.
func (e *pprofEncoder) packed(field int, xs []int64) {
	if len(xs) == 0 {
		return
	}
	e.message(field, func() {
		for _, x := range xs {
			e.varint(uint64(x))
		}
	})
}

func (e *pprofEncoder) valueType(field int, typ, unit string) {
	t, u := e.str(typ), e.str(unit)
	e.message(field, func() {
		e.int64(pbValueTypeType, t)
		e.int64(pbValueTypeUnit, u)
	})
}

// pprofLabel is a sample's label: a string (str) or a number.
type pprofLabel struct {
	key, str string
	num      int64
}

func (e *pprofEncoder) sample(locations, values []int64, labels []pprofLabel) {
	e.message(pbProfileSample, func() {
		e.packed(pbSampleLocationID, locations)
		e.packed(pbSampleValue, values)
		for _, l := range labels {
			k, s := e.str(l.key), int64(0)
			if l.str != "" {
				s = e.str(l.str)
			}
			e.message(pbSampleLabel, func() {
				e.int64(pbLabelKey, k)
				e.int64(pbLabelStr, s)
				e.int64(pbLabelNum, l.num)
			})
		}
	})
}

func (e *pprofEncoder) function(id int64, name, file string) {
	n, f := e.str(name), e.str(file)
	e.message(pbProfileFunction, func() {
		e.int64(pbFunctionID, id)
		e.int64(pbFunctionName, n)
		e.int64(pbFunctionSystemName, n)
		e.int64(pbFunctionFilename, f)
	})
}

// location writes a location of one line of function fn.
func (e *pprofEncoder) location(id, fn, line int64) {
	e.message(pbProfileLocation, func() {
		e.int64(pbLocationID, id)
		e.message(pbLocationLine, func() {
			e.int64(pbLineFunctionID, fn)
			e.int64(pbLineLine, line)
		})
	})
}

// finish appends the string table and writes the whole, gzipped, to w.
func (e *pprofEncoder) finish(w io.Writer) error {
	for _, s := range e.table {
		e.bytes(pbProfileStringTable, []byte(s))
	}
	zw := gzip.NewWriter(w)
	if _, err := zw.Write(e.buf); err != nil {
		return err
	}
	return zw.Close()
}
