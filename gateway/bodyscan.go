package gateway

import (
	"bufio"
	"errors"
	"math/bits"
	"strings"

	"github.com/valyala/fasthttp"
)

// bodyScan follows one HTTP/1.1 message body's framing as its bytes arrive in pieces of any size.
//
// It exists for a data path that relays a member's response body to its client as it
// arrives, byte for byte, without buffering it whole: that path must know where the body
// ends, so that the bytes after it (the member's next response) are never sent on as this
// one's. A body is a Content-Length count of bytes, a chunked body (RFC 9112 section 7.1),
// or everything until the connection closes.
//
// A chunked body is a smuggling surface: were bodyScan to end a body where fasthttp's own
// parser (Response.Read) does not, a member could put a second response inside the first.
// So bodyScan ends a chunked body exactly where fasthttp does, refuses every framing
// fasthttp refuses, and refuses in addition only what RFC 9112 lets a recipient refuse:
//
//   - whitespace after the chunk size without an extension ("5 \r\n"): the chunk grammar
//     (section 7.1) has none there, BWS only before ";". fasthttp takes it.
//   - a chunk extension that is not chunk-ext (section 7.1.1): ";" BWS token [BWS "=" BWS
//     (token / quoted-string)], repeated. fasthttp takes any byte but CR and LF after the
//     first ";" (an empty name, a NUL, an unclosed quote, whitespace before CRLF).
//   - in the trailer section (section 7.1.2, fields as in section 5): a bare LF ending a
//     line (section 2.2 lets a recipient insist on CRLF), a line that starts with
//     whitespace (obs-fold, which a proxy must refuse or rewrite, section 5.2, and a relay
//     cannot rewrite), and whitespace in or after a field name (section 5.1: not a token,
//     and a proxy must remove it, which a relay cannot). fasthttp takes all three, a bare
//     LF only when a CRLFCRLF comes later in its buffer: where it ends such a body depends
//     on the bytes after it ("0\r\nX-A: b\n\r\n" ends there when "X: y\r\n\r\n"
//     follows, and waits for more when nothing does).
//   - a chunk-size line (size, extensions and CRLF) longer than maxChunkLine bytes, and a
//     trailer section (its fields and the final CRLF) longer than maxTrailer bytes, so that a
//     member can keep the scanner busy only while its body makes progress (section 7.1.1:
//     a recipient limits extensions as it limits other parts of a message). fasthttp
//     has no limit on extensions and limits a trailer section by its read buffer.
//
// As in fasthttp, a chunk size has at most maxChunkDigits hex digits, leading zeros
// included (so it never overflows), there is no whitespace before the first ";", and the
// trailer fields fasthttp forbids (Content-Length, Transfer-Encoding, Host, Set-Cookie,
// X-Forwarded-* and the rest of isBadTrailer's list) and values with a control byte are
// refused. FuzzBodyScan checks all of this against fasthttp on any input split anywhere.
//
// A bodyScan is used by one goroutine (the relay's member-to-client copy). It holds no
// bytes of the body but a trailer field name's first bytes, in a copy of its own. It does
// not allocate (TestAllocsBodyScan).
type bodyScan struct {
	left int   // bytes still to come: of a Content-Length body or of a chunk's data; the chunk size while its digits arrive
	line int   // bytes so far of the current chunk-size line, or of the trailer section
	err  error // why the body broke (scanFailed): one of the *chunkError sentinels
	// name holds the first bytes of the current trailer field name, lower-cased, for
	// the forbidden-name check; nameLen is the name's whole length so far.
	nameLen int
	name    [len("proxy-authorization")]byte
	state   uint8
}

// maxChunkLine caps a chunk-size line: size, extensions and CRLF. maxTrailer caps the
// trailer section: every field line and the final CRLF. 4096 bytes is fasthttp's
// default read buffer, which limits a trailer section fasthttp's client takes.
const (
	maxChunkLine = 4096
	maxTrailer   = 4096
)

// maxChunkDigits is fasthttp's limit on a chunk size's hex digits (maxHexIntChars): 15 on
// a 64-bit platform, 7 on a 32-bit one, so that the size fits an int with room.
const maxChunkDigits = 7 + 8*(bits.UintSize/64)

// The states of a bodyScan. The chunk-size line's states run from scanSizeFirst to
// scanSizeLF and the trailer section's from scanFieldStart on, so that one comparison
// tells which cap counts the byte.
const (
	scanDone   uint8 = iota // the body's last byte has been fed
	scanFailed              // the chunked framing is broken (err)
	scanLength              // a Content-Length body, left bytes to come
	scanClose               // a body until the connection closes
	scanData                // chunk data, left bytes to come
	scanDataCR              // the CR after chunk data
	scanDataLF              // the LF after chunk data

	scanSizeFirst     // a chunk size's first hex digit
	scanSize          // more hex digits, ";" or CR
	scanExtPreName    // after ";": BWS, then a name
	scanExtName       // in an extension's name
	scanExtPostName   // BWS after a name: "=" or ";" follows
	scanExtPreValue   // after "=": BWS, then a token or quoted string
	scanExtToken      // in a token value
	scanExtQuoted     // in a quoted-string value
	scanExtQuotedPair // after a backslash in a quoted string
	scanExtPostQuote  // right after a quoted string's closing quote
	scanExtPostValue  // BWS after a value: ";" follows
	scanSizeLF        // the LF of the chunk-size line

	scanFieldStart // a trailer line's first byte, or the final CR
	scanFieldName  // in a trailer field name
	scanFieldValue // in a trailer field's value, OWS included
	scanFieldLF    // the LF of a trailer field line
	scanEndLF      // the LF of the trailer section's final CRLF
)

// chunkError is a chunked framing bodyScan refuses. To errors.As it is a
// fasthttp.ErrBrokenChunk, so that memberFault counts it against the member exactly as
// it counts a broken chunk fasthttp's client finds.
type chunkError struct{ msg string }

func (e *chunkError) Error() string { return e.msg }

// As fills in a *fasthttp.ErrBrokenChunk target with brokenChunk.
func (e *chunkError) As(target any) bool {
	t, ok := target.(*fasthttp.ErrBrokenChunk)
	if ok {
		*t = brokenChunk
	}
	return ok
}

// brokenChunk is the fasthttp.ErrBrokenChunk a chunkError gives errors.As: fasthttp's own,
// from its parser, because only fasthttp can set the type's one (unexported) field, and the
// zero value panics in Error.
var brokenChunk = func() fasthttp.ErrBrokenChunk {
	var resp fasthttp.Response
	var e fasthttp.ErrBrokenChunk
	err := resp.Read(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxxx")))
	if !errors.As(err, &e) {
		panic("BUG: fasthttp did not refuse chunk data without its CRLF with an ErrBrokenChunk")
	}
	return e
}()

// The framings bodyScan refuses that fasthttp refuses as well.
var (
	errChunkSize      = &chunkError{"gateway: chunk size: not 1 to 15 hex digits (7 on a 32-bit platform)"}
	errChunkSizeEnd   = &chunkError{"gateway: chunk size line: not ';' or CRLF after the size"}
	errChunkLineLF    = &chunkError{"gateway: chunk size line: LF without CR"}
	errChunkLineCRLF  = &chunkError{"gateway: chunk size line: CR without LF"}
	errChunkDataCRLF  = &chunkError{"gateway: chunk data not followed by CRLF"}
	errTrailerLine    = &chunkError{"gateway: trailer section: a line that is no field name and colon"}
	errTrailerField   = &chunkError{"gateway: trailer section: a field that is not allowed in trailers"}
	errTrailerValue   = &chunkError{"gateway: trailer section: a field value with a control byte"}
	errTrailerEndCRLF = &chunkError{"gateway: trailer section: CR without LF at its end"}
)

// The framings bodyScan refuses that fasthttp takes, as RFC 9112 allows (see bodyScan).
var (
	errChunkSizeSpace = &chunkError{"gateway: chunk size line: whitespace after the size without an extension"}
	errChunkExt       = &chunkError{"gateway: chunk extension: not RFC 9112 chunk-ext syntax"}
	errChunkLineLong  = &chunkError{"gateway: chunk size line longer than 4096 bytes"}
	errTrailerBareLF  = &chunkError{"gateway: trailer section: LF without CR"}
	errTrailerFold    = &chunkError{"gateway: trailer section: a line that starts with whitespace (obs-fold)"}
	errTrailerSpace   = &chunkError{"gateway: trailer section: whitespace in or after a field name"}
	errTrailerLong    = &chunkError{"gateway: trailer section longer than 4096 bytes"}
)

// Byte classes of RFC 9110 section 5.6, for the chunk-size line and the trailer section.
const (
	classTchar  = 1 << iota // tchar: a token's byte
	classValue              // a field value's byte as fasthttp takes it: HTAB, SP, VCHAR, obs-text
	classQdtext             // qdtext: a quoted string's byte but DQUOTE and backslash
	classPair               // what may follow a backslash in a quoted string: HTAB, SP, VCHAR, obs-text
)

// byteClass maps each byte to its classes.
var byteClass = func() (t [256]uint8) {
	for c := range 256 {
		if c == '\t' || c >= ' ' && c != 0x7f {
			t[c] |= classValue | classPair | classQdtext
		}
		if c > ' ' && c < 0x7f && !strings.ContainsRune("\"(),/:;<=>?@[\\]{}", rune(c)) {
			t[c] |= classTchar
		}
	}
	t['"'] &^= classQdtext
	t['\\'] &^= classQdtext
	return t
}()

// reset starts a body whose length is what fasthttp's ResponseHeader.ContentLength() reports:
// >= 0 that many bytes; -1 chunked (Transfer-Encoding: chunked); -2 until the connection closes.
// Any other negative length is taken as -2.
func (b *bodyScan) reset(contentLength int) {
	*b = bodyScan{}
	switch {
	case contentLength == 0:
		b.state = scanDone
	case contentLength > 0:
		b.state, b.left = scanLength, contentLength
	case contentLength == -1:
		b.state = scanSizeFirst
	default:
		b.state = scanClose
	}
}

// feed looks at the next bytes p of the connection. It returns how many of them belong to the
// body (n <= len(p); for chunked that is the chunk-size lines, data, CRLFs, last chunk and trailer
// section, exactly what a relay must pass on), and done once the body's last byte is within p[:n].
// Bytes after n are the next message's (never consumed). A body of length 0 is done at once,
// with n 0, and a body that is done stays done: feed returns 0 and done for it.
//
// A broken chunked framing is a *chunkError, which errors.As takes for a
// fasthttp.ErrBrokenChunk; n is then the number of bytes before the one that broke it,
// and every later feed returns the same error. For -2, feed consumes everything and is
// never done (the caller ends at EOF). A body that ends before it is done is the caller's
// to refuse.
//
// feed keeps no reference to p. It is not safe for concurrent use, and does not
// allocate. It looks at each byte of a chunk-size line and a trailer section once and at
// no byte of data.
func (b *bodyScan) feed(p []byte) (n int, done bool, err error) {
	switch b.state {
	case scanDone:
		return 0, true, nil
	case scanFailed:
		return 0, false, b.err
	case scanClose:
		return len(p), false, nil
	case scanLength:
		if len(p) < b.left {
			b.left -= len(p)
			return len(p), false, nil
		}
		n, b.left, b.state = b.left, 0, scanDone
		return n, true, nil
	}
	for i := 0; i < len(p); i++ {
		if b.state == scanData {
			k := min(b.left, len(p)-i)
			b.left -= k
			i += k
			if b.left == 0 {
				b.state = scanDataCR
			}
			if i == len(p) {
				break
			}
		}
		c := p[i]
		if b.state >= scanFieldStart {
			if b.line++; b.line > maxTrailer {
				return b.fail(i, errTrailerLong)
			}
		} else if b.state >= scanSizeFirst {
			if b.line++; b.line > maxChunkLine {
				return b.fail(i, errChunkLineLong)
			}
		}
		cls := byteClass[c]
		switch b.state {
		case scanDataCR:
			if c != '\r' {
				return b.fail(i, errChunkDataCRLF)
			}
			b.state = scanDataLF
		case scanDataLF:
			if c != '\n' {
				return b.fail(i, errChunkDataCRLF)
			}
			b.state, b.line = scanSizeFirst, 0

		case scanSizeFirst, scanSize:
			if d := hexDigit(c); d >= 0 {
				// line counts this digit too: it is the digit's place in the size.
				if b.line > maxChunkDigits {
					return b.fail(i, errChunkSize)
				}
				b.left = b.left<<4 | d
				b.state = scanSize
				break
			}
			if b.state == scanSizeFirst {
				return b.fail(i, errChunkSize)
			}
			switch c {
			case '\r':
				b.state = scanSizeLF
			case ';':
				b.state = scanExtPreName
			case ' ', '\t':
				return b.fail(i, errChunkSizeSpace)
			case '\n':
				return b.fail(i, errChunkLineLF)
			default:
				return b.fail(i, errChunkSizeEnd)
			}
		case scanExtPreName, scanExtName, scanExtPostName, scanExtPreValue, scanExtToken,
			scanExtQuoted, scanExtQuotedPair, scanExtPostQuote, scanExtPostValue:
			if c == '\n' {
				// fasthttp refuses a LF anywhere in the line, quoted or not.
				return b.fail(i, errChunkLineLF)
			}
			if !b.ext(c, cls) {
				return b.fail(i, errChunkExt)
			}
		case scanSizeLF:
			if c != '\n' {
				return b.fail(i, errChunkLineCRLF)
			}
			b.line = 0
			if b.left == 0 {
				b.state = scanFieldStart
			} else {
				b.state = scanData
			}

		case scanFieldStart:
			switch {
			case cls&classTchar != 0:
				b.name[0], b.nameLen = lower(c), 1
				b.state = scanFieldName
			case c == '\r':
				b.state = scanEndLF
			case c == '\n':
				return b.fail(i, errTrailerBareLF)
			case c == ' ' || c == '\t':
				return b.fail(i, errTrailerFold)
			default:
				return b.fail(i, errTrailerLine)
			}
		case scanFieldName:
			switch {
			case cls&classTchar != 0:
				if b.nameLen < len(b.name) {
					b.name[b.nameLen] = lower(c)
				}
				b.nameLen++
			case c == ':':
				if forbiddenTrailer(b.name[:min(b.nameLen, len(b.name))], b.nameLen) {
					return b.fail(i, errTrailerField)
				}
				b.state = scanFieldValue
			case c == ' ':
				return b.fail(i, errTrailerSpace)
			default:
				return b.fail(i, errTrailerLine)
			}
		case scanFieldValue:
			switch {
			case cls&classValue != 0:
			case c == '\r':
				b.state = scanFieldLF
			case c == '\n':
				return b.fail(i, errTrailerBareLF)
			default:
				return b.fail(i, errTrailerValue)
			}
		case scanFieldLF:
			if c != '\n' {
				// fasthttp takes a CR not followed by LF for a byte of the value, which
				// a CR may not be.
				return b.fail(i, errTrailerValue)
			}
			b.state = scanFieldStart
		case scanEndLF:
			if c != '\n' {
				return b.fail(i, errTrailerEndCRLF)
			}
			*b = bodyScan{state: scanDone}
			return i + 1, true, nil
		}
	}
	return len(p), false, nil
}

// ext takes byte c (classes cls, not LF) of a chunk extension, as RFC 9112 section 7.1.1
// spells it: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ),
// then CRLF. It reports false for a byte the grammar has no place for.
func (b *bodyScan) ext(c byte, cls uint8) bool {
	bws := c == ' ' || c == '\t'
	switch b.state {
	case scanExtPreName:
		if cls&classTchar != 0 {
			b.state = scanExtName
			return true
		}
		return bws
	case scanExtName:
		switch {
		case cls&classTchar != 0:
		case bws:
			b.state = scanExtPostName
		case c == '=':
			b.state = scanExtPreValue
		case c == ';':
			b.state = scanExtPreName
		case c == '\r':
			b.state = scanSizeLF
		default:
			return false
		}
	case scanExtPostName:
		switch {
		case bws:
		case c == '=':
			b.state = scanExtPreValue
		case c == ';':
			b.state = scanExtPreName
		default:
			return false
		}
	case scanExtPreValue:
		switch {
		case bws:
		case cls&classTchar != 0:
			b.state = scanExtToken
		case c == '"':
			b.state = scanExtQuoted
		default:
			return false
		}
	case scanExtToken, scanExtPostQuote:
		switch {
		case cls&classTchar != 0 && b.state == scanExtToken:
		case bws:
			b.state = scanExtPostValue
		case c == ';':
			b.state = scanExtPreName
		case c == '\r':
			b.state = scanSizeLF
		default:
			return false
		}
	case scanExtQuoted:
		switch {
		case cls&classQdtext != 0:
		case c == '"':
			b.state = scanExtPostQuote
		case c == '\\':
			b.state = scanExtQuotedPair
		default:
			return false
		}
	case scanExtQuotedPair:
		if cls&classPair == 0 {
			return false
		}
		b.state = scanExtQuoted
	case scanExtPostValue:
		switch {
		case bws:
		case c == ';':
			b.state = scanExtPreName
		default:
			return false
		}
	}
	return true
}

// fail ends the body with err at byte i of the piece being fed.
func (b *bodyScan) fail(i int, err *chunkError) (int, bool, error) {
	b.state, b.err = scanFailed, err
	return i, false, err
}

// hexDigit is c's value as a hex digit, or -1.
func hexDigit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// lower is the lower case of token byte c.
func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// forbiddenTrailer reports whether a field name that is n bytes long and starts with
// the lower-cased bytes name (all of it when it fits) is one fasthttp refuses in a
// trailer section (its isBadTrailer): framing, routing, authentication and cookie
// fields, and any X-Forwarded-* or X-Real-IP*.
func forbiddenTrailer(name []byte, n int) bool {
	if n >= len("x-forwarded") && string(name[:len("x-forwarded")]) == "x-forwarded" ||
		n >= len("x-real-ip") && string(name[:len("x-real-ip")]) == "x-real-ip" {
		return true
	}
	if n > len(name) {
		return false
	}
	switch string(name) {
	case "authorization", "connection", "content-encoding", "content-length", "content-range",
		"content-type", "cookie", "expect", "host", "keep-alive", "location", "max-forwards",
		"proxy-authenticate", "proxy-authorization", "proxy-connection", "range", "set-cookie",
		"te", "trailer", "transfer-encoding", "www-authenticate":
		return true
	}
	return false
}
