package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sessiongate/sessiongate/health"
	"github.com/valyala/fasthttp"
)

// chunkedHead is the head fasthttp reads before the chunked bodies it is compared on.
const chunkedHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

// strictChunkErrors are the framings bodyScan refuses and fasthttp takes: the only
// errors it may return where fasthttp reads the body.
var strictChunkErrors = []error{
	errChunkSizeSpace, errChunkExt, errChunkLineLong,
	errTrailerBareLF, errTrailerFold, errTrailerSpace, errTrailerLong,
}

// scanResult is where a bodyScan left a body: the bytes it took, done, and its error.
type scanResult struct {
	n    int
	done bool
	err  error
}

// scanPieces feeds data to a new bodyScan in pieces of the sizes next returns (at least
// 1), as a relay would, until the body is done, fails, or data runs out. It checks the
// contract of each feed on the way.
func scanPieces(t testing.TB, contentLength int, data []byte, next func() int) scanResult {
	t.Helper()
	var b bodyScan
	b.reset(contentLength)
	var r scanResult
	for pos := 0; ; {
		k := min(next(), len(data)-pos)
		n, done, err := b.feed(data[pos : pos+k])
		if n < 0 || n > k || done && err != nil {
			t.Fatalf("feed(%d bytes at %d) = %d, %v, %v", k, pos, n, done, err)
		}
		r = scanResult{r.n + n, done, err}
		if done || err != nil {
			// A body that is done or broken stays so.
			if n2, done2, err2 := b.feed(data[pos+n:]); n2 != 0 || done2 != done || err2 != err {
				t.Fatalf("feed after the end = %d, %v, %v, want 0, %v, %v", n2, done2, err2, done, err)
			}
			return r
		}
		if n != k {
			t.Fatalf("feed(%d bytes at %d) took %d, neither done nor failed", k, pos, n)
		}
		if pos += k; pos == len(data) {
			return r
		}
	}
}

// scanSplits scans data whole, a byte at a time and in random pieces from rng, checks
// that every split ends alike, and returns that end.
func scanSplits(t testing.TB, contentLength int, data []byte, rng *rand.Rand, random int) scanResult {
	t.Helper()
	want := scanPieces(t, contentLength, data, func() int { return len(data) + 1 })
	check := func(how string, next func() int) {
		t.Helper()
		if got := scanPieces(t, contentLength, data, next); got != want {
			t.Fatalf("%s: %+v, whole: %+v", how, got, want)
		}
	}
	check("a byte at a time", func() int { return 1 })
	for range random {
		limit := 1 + rng.IntN(1+len(data))
		check("random pieces", func() int { return 1 + rng.IntN(limit) })
	}
	return want
}

// eofReader is a bytes.Reader that records whether it was read at its end: whether its
// reader wanted more bytes than there were.
type eofReader struct {
	bytes.Reader
	eof bool
}

func (r *eofReader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	if err == io.EOF {
		r.eof = true
	}
	return n, err
}

// fasthttpBody reads head and then data with fasthttp.Response.ReadLimitBody through a
// bufio.Reader larger than any input (so that its size refuses nothing), and returns
// where fasthttp ended the body (the bytes of data it read), its error, and whether it
// wanted bytes beyond data: a body cut short, not a broken one. The body limit is data's
// length, so that a chunk size larger than the input is refused before it is allocated,
// which is the same cut.
func fasthttpBody(head string, data []byte) (end int, err error, cut bool) {
	var src eofReader
	src.Reset(append([]byte(head), data...))
	br := bufio.NewReaderSize(&src, 1<<17)
	var resp fasthttp.Response
	err = resp.ReadLimitBody(br, len(data)+1)
	return len(data) - br.Buffered() - src.Len(), err, src.eof || errors.Is(err, fasthttp.ErrBodyTooLarge)
}

// checkChunked holds a bodyScan's end r of the chunked body data to fasthttp's: done
// exactly where fasthttp ends the body, refused wherever fasthttp refuses it (or waiting
// for bytes where fasthttp wants more), and refused where fasthttp reads it only for a
// strict error, at a byte before fasthttp's end of the body.
func checkChunked(t testing.TB, data []byte, r scanResult) {
	t.Helper()
	end, ferr, cut := fasthttpBody(chunkedHead, data)
	switch {
	case r.done:
		if ferr != nil {
			t.Fatalf("%q: done at %d, fasthttp refuses: %v", data, r.n, ferr)
		}
		if r.n != end {
			t.Fatalf("%q: done at %d, fasthttp ends the body at %d", data, r.n, end)
		}
	case r.err != nil:
		if ferr != nil {
			break
		}
		if !slices.Contains(strictChunkErrors, r.err) {
			t.Fatalf("%q: refused at %d (%v), fasthttp ends the body at %d", data, r.n, r.err, end)
		}
		if r.n >= end {
			t.Fatalf("%q: refused at %d (%v), after fasthttp's end of the body at %d", data, r.n, r.err, end)
		}
	default:
		if ferr == nil {
			t.Fatalf("%q: not done after %d bytes, fasthttp ends the body at %d", data, r.n, end)
		}
		if !cut {
			t.Fatalf("%q: not done after %d bytes, fasthttp refuses it with no need of more: %v", data, r.n, ferr)
		}
	}
}

// checkLength holds a bodyScan's end of a Content-Length body to fasthttp's.
func checkLength(t testing.TB, contentLength int, data []byte, r scanResult) {
	t.Helper()
	end, ferr, _ := fasthttpBody("HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(contentLength)+"\r\n\r\n", data)
	if r.err != nil || r.done != (ferr == nil) || r.n != min(contentLength, len(data)) || r.done && r.n != end {
		t.Fatalf("length %d of %d bytes: %+v, fasthttp ends at %d with %v", contentLength, len(data), r, end, ferr)
	}
}

func TestBodyScan(t *testing.T) {
	const chunked, untilClose = -1, -2
	long := strings.Repeat("a", maxChunkLine)
	tests := []struct {
		name string
		cl   int
		body string // the bytes the scanner takes
		rest string // the bytes after them: the next message's, or the one that broke the body and after
		done bool
		err  *chunkError
	}{
		{"content-length", 5, "hello", "HTTP/1.1 200 OK\r\n", true, nil},
		{"content-length cut", 10, "hello", "", false, nil},
		{"zero length", 0, "", "HTTP/1.1 200 OK\r\n", true, nil},
		{"zero length, nothing fed", 0, "", "", true, nil},
		{"until close", untilClose, "hello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n", "", false, nil},

		{"one chunk", chunked, "5\r\nhello\r\n0\r\n\r\n", "", true, nil},
		{"last chunk only", chunked, "0\r\n\r\n", "", true, nil},
		{"multiple chunks", chunked, "5\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\nf\r\n0123456789abcde\r\n0\r\n\r\n", "", true, nil},
		{"leading zeros", chunked, "000005\r\nhello\r\n000\r\n\r\n", "", true, nil},
		{"15 digits", chunked, "000000000000005\r\nhello\r\n000000000000000\r\n\r\n", "", true, nil},
		{"data with CRLF and chunk lines", chunked, "b\r\n0\r\n\r\n1\r\nx\r\n\r\n0\r\n\r\n", "", true, nil},
		{"extensions", chunked, "5;name=value;q=\"a \\\" b\";flag\r\nhello\r\n0;last\r\n\r\n", "", true, nil},
		{"extension BWS", chunked, "5; a = b ;\tc\t=\"\"\r\nhello\r\n0\r\n\r\n", "", true, nil},
		{"trailers", chunked, "0\r\nExpires: Thu, 01 Dec 1994 16:00:00 GMT\r\nX-Checksum: abc\r\n\r\n", "", true, nil},
		{"trailer OWS, HTAB and obs-text", chunked, "0\r\nX-A:\t v\tw\xff \t\r\n\r\n", "", true, nil},
		{"trailer empty value", chunked, "0\r\nX-A:\r\n\r\n", "", true, nil},
		{"trailers like forbidden ones", chunked, "0\r\nContent-MD5: x\r\nHosts: x\r\nTE2: x\r\nX-Forward: x\r\nProxy-Foo: x\r\n\r\n", "", true, nil},
		{"next response in the same piece", chunked, "5\r\nhello\r\n0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true, nil},
		{"next response after trailers", chunked, "0\r\nX-A: b\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n", true, nil},
		{"line at the cap", chunked, "5;" + long[:maxChunkLine-4] + "\r\nhello\r\n0\r\n\r\n", "", true, nil},
		{"trailer section at the cap", chunked, "0\r\nX-A: " + long[:maxTrailer-9] + "\r\n\r\n", "", true, nil},
		{"cut in a size", chunked, "1a", "", false, nil},
		{"cut in data", chunked, "5\r\nhel", "", false, nil},
		{"cut in a trailer", chunked, "0\r\nX-A: b\r\n", "", false, nil},
		{"cut before the last CRLF", chunked, "0\r\n", "", false, nil},

		{"empty size", chunked, "", "\r\nhello\r\n", false, errChunkSize},
		{"size not hex", chunked, "", "g\r\n", false, errChunkSize},
		{"negative size", chunked, "", "-1\r\n", false, errChunkSize},
		{"16 digits", chunked, "000000000000000", "5\r\nhello\r\n0\r\n\r\n", false, errChunkSize},
		{"size overflow", chunked, "fffffffffffffff", "f\r\n", false, errChunkSize},
		{"junk after size", chunked, "5", "x\r\nhello\r\n", false, errChunkSizeEnd},
		{"0x prefix", chunked, "0", "x5\r\nhello\r\n", false, errChunkSizeEnd},
		{"space after size", chunked, "5", " \r\nhello\r\n0\r\n\r\n", false, errChunkSizeSpace},
		{"space before an extension", chunked, "5", " ;a\r\nhello\r\n", false, errChunkSizeSpace},
		{"bare LF after size", chunked, "5", "\nhello\r\n0\r\n\r\n", false, errChunkLineLF},
		{"CR without LF", chunked, "5\r", "hello\r\n", false, errChunkLineCRLF},
		{"LF in an extension", chunked, "5;a", "\nb\r\n", false, errChunkLineLF},
		{"LF in a quoted extension", chunked, "5;a=\"", "\n\"\r\n", false, errChunkLineLF},
		{"empty extension", chunked, "5;", "\r\nhello\r\n0\r\n\r\n", false, errChunkExt},
		{"extension with NUL", chunked, "5;a", "\x00\r\nhello\r\n0\r\n\r\n", false, errChunkExt},
		{"extension value missing", chunked, "5;a=", "\r\nhello\r\n0\r\n\r\n", false, errChunkExt},
		{"unclosed quote", chunked, "5;a=\"b", "\r\nhello\r\n0\r\n\r\n", false, errChunkExt},
		{"whitespace before CRLF in an extension", chunked, "5;a ", "\r\nhello\r\n0\r\n\r\n", false, errChunkExt},
		{"token after a quoted value", chunked, "5;a=\"b\"", "c\r\nhello\r\n0\r\n\r\n", false, errChunkExt},
		{"missing CRLF after data", chunked, "5\r\nhello", "X\r\n0\r\n\r\n", false, errChunkDataCRLF},
		{"LF only after data", chunked, "5\r\nhello", "\n0\r\n\r\n", false, errChunkDataCRLF},
		{"CR only after data", chunked, "5\r\nhello\r", "0\r\n\r\n", false, errChunkDataCRLF},
		{"data longer than its size", chunked, "3\r\nhel", "lo\r\n0\r\n\r\n", false, errChunkDataCRLF},
		{"oversize line", chunked, "5;" + long[:maxChunkLine-2], "a\r\nhello\r\n0\r\n\r\n", false, errChunkLineLong},
		{"oversize trailer section", chunked, "0\r\nX-A: " + long[:maxTrailer-5], "a\r\n\r\n", false, errTrailerLong},
		{"Content-Length trailer", chunked, "0\r\nContent-Length", ": 5\r\n\r\n", false, errTrailerField},
		{"transfer-encoding trailer", chunked, "0\r\nX-A: b\r\ntransfer-encoding", ": chunked\r\n\r\n", false, errTrailerField},
		{"Set-Cookie trailer", chunked, "0\r\nSET-COOKIE", ": a=b\r\n\r\n", false, errTrailerField},
		{"X-Forwarded-* trailer", chunked, "0\r\nX-Forwarded-For-Me-Too-Please", ": 1\r\n\r\n", false, errTrailerField},
		{"X-Real-IP* trailer", chunked, "0\r\nx-real-ipv6", ": ::1\r\n\r\n", false, errTrailerField},
		{"trailer control byte", chunked, "0\r\nX-A: a", "\x01b\r\n\r\n", false, errTrailerValue},
		{"trailer DEL", chunked, "0\r\nX-A: a", "\x7f\r\n\r\n", false, errTrailerValue},
		{"trailer bare CR", chunked, "0\r\nX-A: a\r", "b\r\n\r\n", false, errTrailerValue},
		{"trailer bare LF", chunked, "0\r\nX-A: b", "\n\r\n", false, errTrailerBareLF},
		{"trailer section ending in a bare LF", chunked, "0\r\n", "\n", false, errTrailerBareLF},
		{"obs-fold", chunked, "0\r\nX-A: b\r\n", " c\r\n\r\n", false, errTrailerFold},
		{"trailer section starting with a space", chunked, "0\r\n", " X-A: b\r\n\r\n", false, errTrailerFold},
		{"space before the colon", chunked, "0\r\nX-A", " : b\r\n\r\n", false, errTrailerSpace},
		{"trailer without colon", chunked, "0\r\nX-A", "\r\n\r\n", false, errTrailerLine},
		{"trailer with empty name", chunked, "0\r\n", ": b\r\n\r\n", false, errTrailerLine},
		{"trailer name with a tab", chunked, "0\r\nX-A", "\t: b\r\n\r\n", false, errTrailerLine},
		{"CR without LF at the end", chunked, "0\r\n\r", "X\r\n", false, errTrailerEndCRLF},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.body + tc.rest)
			r := scanSplits(t, tc.cl, data, rng, 20)
			var want error
			if tc.err != nil {
				want = tc.err
			}
			if r.n != len(tc.body) || r.done != tc.done || r.err != want {
				t.Fatalf("feed(%q) = %d, %v, %v, want %d, %v, %v", data, r.n, r.done, r.err, len(tc.body), tc.done, want)
			}
			if tc.cl == chunked {
				checkChunked(t, data, r)
			}
			if tc.cl >= 0 {
				checkLength(t, tc.cl, data, r)
			}
		})
	}
}

// TestBodyScanBrokenChunk checks that every error is a fasthttp.ErrBrokenChunk to
// errors.As, one whose Error works, so that memberFault counts it as a broken member.
func TestBodyScanBrokenChunk(t *testing.T) {
	var b bodyScan
	b.reset(-1)
	_, _, err := b.feed([]byte("5\r\nhelloX"))
	if err != errChunkDataCRLF {
		t.Fatalf("feed = %v, want %v", err, errChunkDataCRLF)
	}
	var broken fasthttp.ErrBrokenChunk
	if !errors.As(err, &broken) || broken.Error() == "" {
		t.Fatalf("errors.As(%v, *fasthttp.ErrBrokenChunk) = false", err)
	}
	if f, ok := memberFault(err, kindMemberError); !ok || f != health.Broken {
		t.Fatalf("memberFault(%v) = %v, %v, want broken", err, f, ok)
	}
	var other *fasthttp.ErrSmallBuffer
	if errors.As(err, &other) {
		t.Fatalf("errors.As(%v, *fasthttp.ErrSmallBuffer) = true", err)
	}
}

// TestBodyScanTrailerNames holds the forbidden-name check to fasthttp's own: every name
// it forbids, in three casings, and the names one byte away from each, are refused by
// bodyScan exactly when fasthttp refuses them.
func TestBodyScanTrailerNames(t *testing.T) {
	names := []string{
		"Authorization", "Connection", "Content-Encoding", "Content-Length", "Content-Range",
		"Content-Type", "Cookie", "Expect", "Host", "Keep-Alive", "Location", "Max-Forwards",
		"Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Range", "Set-Cookie",
		"TE", "Trailer", "Transfer-Encoding", "WWW-Authenticate", "X-Forwarded", "X-Forwarded-For",
		"X-Forwarded-Proto-And-Much-More", "X-Real-IP", "X-Real-IP-Address", "Content-MD5", "Content-",
		"Proxy-", "X-",
	}
	var all []string
	for _, n := range names {
		all = append(all, n, strings.ToLower(n), strings.ToUpper(n),
			n[:len(n)-1], n+"x", "x"+n, n[1:], "~"+n[1:], n[:len(n)-1]+"!")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range all {
		data := []byte("0\r\n" + n + ": v\r\n\r\n")
		r := scanSplits(t, -1, data, rng, 2)
		checkChunked(t, data, r)
		_, ferr, _ := fasthttpBody(chunkedHead, data)
		if (r.err == errTrailerField) != (ferr != nil) || !r.done && r.err != errTrailerField {
			t.Errorf("trailer %q: %+v, fasthttp: %v", n, r, ferr)
		}
	}
}

// TestBodyScanGenerated holds bodyScan to fasthttp on chunked bodies put together from
// the pieces that matter to the framing, right and wrong, with the next message after
// them: sizes in any case and with leading zeros, sizes that miss their data by a byte,
// extensions, line ends, trailer fields and their names. The fuzz test finds such
// inputs slowly, a byte at a time.
func TestBodyScanGenerated(t *testing.T) {
	sizes := []string{"0", "00", "1", "5", "A", "a", "1f", "000000000000001", "0000000000000001", "g", "", "-1", "5x", "0x5"}
	afters := []string{"", "", "", " ", "\t", ";", ";a", ";a=b", ";a=\"b c\"", "; a = \"\\\"\" ;b", ";a=", ";a ", ";a=\"b", ";\x00", ";a=b;", " ;a", ";a\n"}
	ends := []string{"\r\n", "\r\n", "\r\n", "\r\n", "\n", "\r", "", "\r\r\n", "\n\r"}
	fields := []string{"X-A: b", "X-A:b", "X-A: ", "X-A:\tb\t", "X-A : b", "X A: b", " X-A: b", "\tb", ": b", "X-A",
		"Content-Length: 5", "TE: trailers", "Host: h", "x-forwarded-for: 1", "X-A: a\x01b", "X-A: a\rb", "X-A: \xff", "X-A: a\x7f"}
	nexts := []string{"", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "0\r\n\r\n", "\r\n", "\r\n\r\n", "X: y\r\n\r\n", "5\r\nhello"}
	pick := func(rng *rand.Rand, from []string) string { return from[rng.IntN(len(from))] }
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		var b []byte
		for range rng.IntN(4) {
			n := 1 + rng.IntN(20)
			size := strconv.FormatInt(int64(n), 16)
			if rng.IntN(2) == 0 {
				size = strings.ToUpper(size)
			}
			if rng.IntN(8) == 0 {
				size = pick(rng, sizes)
			}
			data := strings.Repeat("d", n+rng.IntN(3)/2-rng.IntN(3)/2)
			b = append(b, size+pick(rng, afters)+pick(rng, ends)+data+pick(rng, ends)...)
		}
		b = append(b, "0"+pick(rng, afters)+pick(rng, ends)...)
		for range rng.IntN(3) {
			b = append(b, pick(rng, fields)+pick(rng, ends)...)
		}
		b = append(b, pick(rng, ends)+pick(rng, nexts)...)
		checkChunked(t, b, scanSplits(t, -1, b, rng, 2))
	}
}

// FuzzBodyScan holds bodyScan to fasthttp's parser on any input, split anywhere: a
// chunked body is done exactly where fasthttp ends it, refused wherever fasthttp refuses
// it (or still waiting where fasthttp wants more bytes), and refused where fasthttp reads
// it only for one of the strict errors; whole, a byte at a time and in random pieces
// alike. A Content-Length body of a length chosen by split, and a body until close, take
// what fasthttp takes.
func FuzzBodyScan(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), uint16(3))
	f.Add([]byte("5;a=\"b\"\r\nhello\r\n0\r\nX-A: b\r\n\r\nHTTP/1.1 200 OK\r\n"), uint16(7))
	f.Add([]byte("0\r\nContent-Length: 5\r\n\r\n"), uint16(1))
	f.Add([]byte("5 \r\nhello\r\n0\r\n\r\n"), uint16(2))
	f.Add([]byte("0\r\nX-A: b\r\n c\r\n\r\n"), uint16(9))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		if len(data) > 2*maxChunkLine+64 {
			return
		}
		rng := rand.New(rand.NewPCG(uint64(split), 0))
		checkChunked(t, data, scanSplits(t, -1, data, rng, 3))
		// A length body's bytes are not looked at: one random split is enough.
		limit := 1 + int(split)%(len(data)+1)
		pieces := func() int { return 1 + rng.IntN(limit) }
		cl := int(split) % (len(data) + 2)
		checkLength(t, cl, data, scanPieces(t, cl, data, pieces))
		if r := scanPieces(t, -2, data, pieces); r != (scanResult{n: len(data)}) {
			t.Fatalf("until close: %+v, want all %d bytes, not done", r, len(data))
		}
	})
}

// TestAllocsBodyScan guards the scanner, which runs on every read of a relayed body: a
// chunked body with extensions and trailers in reads of several sizes, a Content-Length
// body, a body until close, and a broken one.
func TestAllocsBodyScan(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation guards do not run under -race")
	}
	body := realisticChunked()
	broken := []byte("5\r\nhelloX")
	var b bodyScan
	f := func() {
		for _, size := range []int{1, 7, 4096} {
			b.reset(-1)
			for p := body; len(p) > 0; {
				k := min(size, len(p))
				b.feed(p[:k])
				p = p[k:]
			}
		}
		b.reset(len(body))
		b.feed(body)
		b.reset(-2)
		b.feed(body)
		b.reset(-1)
		b.feed(broken)
	}
	if n := testing.AllocsPerRun(1000, f); n != 0 {
		t.Fatalf("bodyScan.feed: %v allocs/op, want 0", n)
	}
}

// realisticChunked is a chunked body as members send them: chunks of a few sizes, one
// with an extension, the last chunk and two trailer fields.
func realisticChunked() []byte {
	var b []byte
	for i, n := range []int{8192, 1, 300, 4096, 17} {
		b = strconv.AppendInt(b, int64(n), 16)
		if i == 2 {
			b = append(b, ";name=\"value\""...)
		}
		b = append(b, "\r\n"...)
		b = append(b, bytes.Repeat([]byte{'x'}, n)...)
		b = append(b, "\r\n"...)
	}
	return append(b, "0\r\nServer-Timing: db;dur=53\r\nX-Checksum: 9f86d081884c7d65\r\n\r\n"...)
}

func BenchmarkBodyScan(b *testing.B) {
	body := realisticChunked()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	var s bodyScan
	for b.Loop() {
		s.reset(-1)
		for p := body; len(p) > 0; {
			k := min(4096, len(p))
			s.feed(p[:k])
			p = p[k:]
		}
	}
}
