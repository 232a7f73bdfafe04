package gateway

import "testing"

// scanAll feeds raw to a fresh clientConn in the given chunk sizes and reports what it
// found: whether a read failed for a bare-LF head end, the flags, and whether the head
// was seen to end.
func scanAll(raw string, chunks []int) (bareEnd bool, flags uint8, ended bool) {
	c := &clientConn{inHead: true}
	p := []byte(raw)
	for _, n := range chunks {
		if len(p) == 0 {
			break
		}
		n = min(n, len(p))
		if c.inHead && c.scan(p[:n]) {
			return true, c.flags, false
		}
		p = p[n:]
	}
	if len(p) > 0 && c.inHead && c.scan(p) {
		return true, c.flags, false
	}
	return false, c.flags, !c.inHead
}

// What the scan finds does not depend on how the kernel splits the reads.
func TestClientConnScanAnySplit(t *testing.T) {
	tests := []struct {
		name, raw string
		bareEnd   bool
		flags     uint8
		ended     bool
	}{
		{"crlf", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, 0, true},
		{"crlf with body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\na\n\n", false, flagContentLength, true},
		{"bare lf", "GET / HTTP/1.1\nHost: a\n\n", true, flagBareLF, false},
		{"bare lf before crlf", "GET / HTTP/1.1\r\nHost: a\n\r\n", true, flagBareLF, false},
		{"bare lf inside", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", true, flagBareLF, false},
		{"cl and te", "POST / HTTP/1.1\r\ncontent-length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", false, flagContentLength | flagTransferEncoding, true},
		{"leading empty line", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", false, 0, true},
		{"incomplete", "GET / HTTP/1.1\r\nHost: a\r\n", false, 0, false},
		// The body of a pipelined request whose head came with its predecessor's.
		{"pipelined body", "a\n\nbcd", false, 0, true},
		{"pipelined body, longer line", "abcdefghijklmnopq\n\n", false, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(how string, chunks []int, names bool) {
				t.Helper()
				bareEnd, flags, ended := scanAll(tc.raw, chunks)
				if !names { // a header name split across reads is not seen (documented)
					flags &= flagBareLF
				}
				want := tc.flags
				if !names {
					want &= flagBareLF
				}
				if bareEnd != tc.bareEnd || ended != tc.ended || flags != want {
					t.Errorf("scan(%q) in %s = bare end %v, flags %b, ended %v; want %v, %b, %v", tc.raw, how, bareEnd, flags, ended, tc.bareEnd, tc.flags, tc.ended)
				}
			}
			check("one read", []int{len(tc.raw)}, true)
			ones := make([]int, len(tc.raw))
			for i := range ones {
				ones[i] = 1
			}
			check("reads of one byte", ones, true)
			for i := 1; i < len(tc.raw); i++ {
				bareEnd, flags, ended := scanAll(tc.raw, []int{i, len(tc.raw)})
				if bareEnd != tc.bareEnd || ended != tc.ended || flags != tc.flags {
					t.Errorf("scan(%q) split at %d = bare end %v, flags %b, ended %v; want %v, %b, %v", tc.raw, i, bareEnd, flags, ended, tc.bareEnd, tc.flags, tc.ended)
				}
			}
		})
	}
}
