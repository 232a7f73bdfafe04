package gateway

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
)

// wsFrame encodes one server frame with opcode op and a payload of n bytes, its length
// in the shortest form unless long asks for the 64-bit one, masked if mask.
func wsFrame(op byte, n int, mask, long bool) []byte {
	b := []byte{0x80 | op}
	var m byte
	if mask {
		m = 0x80
	}
	switch {
	case long:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	case n < 126:
		b = append(b, m|byte(n))
	case n <= 0xffff:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if mask {
		b = append(b, 1, 2, 3, 4)
	}
	return append(b, bytes.Repeat([]byte{'\n'}, n)...)
}

// refFrames parses a stream whole, frame after frame, independently of wsFrames: the
// offsets of every frame boundary in it (0 first), whether the stream ends at one, and
// whether a close frame's head is complete in it.
func refFrames(p []byte) (bounds []int, atEnd, closed bool) {
	bounds = []int{0}
	i := 0
	for i < len(p) {
		if len(p)-i < 2 {
			return bounds, false, closed
		}
		b0, b1 := p[i], p[i+1]
		head := 2
		l7 := int(b1 & 0x7f)
		if l7 == 126 {
			head = 4
		} else if l7 == 127 {
			head = 10
		}
		if b1&0x80 != 0 {
			head += 4
		}
		if len(p)-i < head {
			return bounds, false, closed
		}
		n := uint64(l7)
		if l7 == 126 {
			n = uint64(binary.BigEndian.Uint16(p[i+2:]))
		} else if l7 == 127 {
			n = binary.BigEndian.Uint64(p[i+2:])
		}
		if b0&0x0f == 8 {
			closed = true
		}
		if uint64(len(p)-i-head) < n {
			return bounds, false, closed
		}
		i += head + int(n)
		bounds = append(bounds, i)
	}
	return bounds, true, closed
}

// walkBoundaries finds the boundaries of p with wsFrames: scan with stop to the next
// one, step one byte past it, and so on.
func walkBoundaries(p []byte) (bounds []int, f wsFrames) {
	pos := 0
	for {
		pos += f.scan(p[pos:], true)
		if f.boundary() {
			bounds = append(bounds, pos)
		}
		if pos == len(p) {
			return bounds, f
		}
		f.scan(p[pos:pos+1], false)
		pos++
	}
}

func TestWSFramesBoundaries(t *testing.T) {
	text, ping, closeF := wsFrame(0x1, 5, false, false), wsFrame(0x9, 0, false, false), wsFrame(0x8, 2, false, false)
	mid, big, long := wsFrame(0x2, 300, false, false), wsFrame(0x2, 70000, false, false), wsFrame(0x2, 3, false, true)
	masked := wsFrame(0x1, 4, true, false)
	tests := []struct {
		name   string
		stream []byte
		closed bool
	}{
		{"empty", nil, false},
		{"one text frame", text, false},
		{"empty ping", ping, false},
		{"16-bit length", mid, false},
		{"64-bit length", big, false},
		{"64-bit form of a short length", long, false},
		{"masked", masked, false},
		{"several", slices.Concat(text, ping, mid, text, big, long), false},
		{"close frame", slices.Concat(text, closeF), true},
		{"cut in a head", slices.Concat(text, mid[:3]), false},
		{"cut in a payload", slices.Concat(text, big[:1000]), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, _, _ := refFrames(tc.stream)
			got, f := walkBoundaries(tc.stream)
			if !slices.Equal(got, want) {
				t.Fatalf("boundaries = %v, want %v", got, want)
			}
			if f.closed != tc.closed {
				t.Fatalf("closed = %v, want %v", f.closed, tc.closed)
			}
			// Any split of the stream into reads ends in the same state.
			for _, size := range []int{1, 2, 3, 7, 100, 4096} {
				var g wsFrames
				for p := tc.stream; len(p) > 0; {
					k := min(size, len(p))
					if n := g.scan(p[:k], false); n != k {
						t.Fatalf("scan(%d bytes, false) = %d", k, n)
					}
					p = p[k:]
				}
				if g != f {
					t.Fatalf("reads of %d bytes: state %+v, want %+v", size, g, f)
				}
			}
		})
	}
}

// FuzzWSFrames checks the frame tracker on any stream: it never panics, a scan with
// stop returns an offset within its input, the boundaries it finds are those of a
// parser that reads the stream whole, and one read or two (split anywhere) end in
// the same state.
func FuzzWSFrames(f *testing.F) {
	f.Add(slices.Concat(wsFrame(1, 5, false, false), wsFrame(9, 0, false, false)), uint16(3))
	f.Add(slices.Concat(wsFrame(2, 300, false, false), wsFrame(8, 2, false, false)), uint16(2))
	f.Add(slices.Concat(wsFrame(2, 3, false, true), wsFrame(1, 4, true, false)), uint16(11))
	f.Add([]byte{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(5))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint16(4))
	f.Fuzz(func(t *testing.T, p []byte, split uint16) {
		if len(p) > 1<<16 {
			return
		}
		want, atEnd, closed := refFrames(p)
		got, fr := walkBoundaries(p)
		if !slices.Equal(got, want) {
			t.Fatalf("boundaries = %v, want %v", got, want)
		}
		if fr.boundary() != atEnd || fr.closed != closed {
			t.Fatalf("at end: boundary %v closed %v, want %v %v", fr.boundary(), fr.closed, atEnd, closed)
		}
		var whole, two wsFrames
		if n := whole.scan(p, false); n != len(p) {
			t.Fatalf("scan(p, false) = %d, want %d", n, len(p))
		}
		k := int(split) % (len(p) + 1)
		two.scan(p[:k], false)
		two.scan(p[k:], false)
		if whole != two {
			t.Fatalf("split at %d: state %+v, want %+v", k, two, whole)
		}
		var st wsFrames
		if n := st.scan(p, true); n < 0 || n > len(p) {
			t.Fatalf("scan(p, true) = %d, outside 0-%d", n, len(p))
		}
	})
}
