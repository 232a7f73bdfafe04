package gateway

// wsFrames follows the frame boundaries of the WebSocket stream a member sends to its
// client (RFC 6455 section 5.2), so that a tunnel the gateway closes can put its own
// close frame between two of the member's frames, never inside one: control frames
// may come between the frames of a fragmented message (section 5.4), not within a
// frame. It reads only frame heads, incrementally across reads of any size: a head
// (2 bytes, then a 16- or 64-bit length and a masking key where announced) may be
// split anywhere, and a payload is skipped by its length without looking at it.
//
// A wsFrames is used by one goroutine (the tunnel's member-to-client copy); it does
// not allocate. A stream that is not WebSocket at all just never comes back to a
// boundary, and the tunnel is then closed without a close frame.
type wsFrames struct {
	left   uint64   // payload bytes of the current frame still to come
	head   [14]byte // the next frame's head so far
	headN  uint8
	closed bool // the member sent a close frame: the WebSocket is closing already
}

// boundary reports whether the stream is between two frames (or before the first).
func (f *wsFrames) boundary() bool { return f.left == 0 && f.headN == 0 }

// scan follows the bytes p, which come next in the stream. Without stop it takes all
// of them and returns len(p); with stop it stops at the first frame boundary in p (0
// if the stream is at one already) and returns how many bytes of p come before it,
// leaving the rest untaken. It does not allocate.
func (f *wsFrames) scan(p []byte, stop bool) int {
	i := 0
	for {
		if f.left > 0 {
			rest := uint64(len(p) - i)
			if rest < f.left {
				f.left -= rest
				return len(p)
			}
			i += int(f.left)
			f.left = 0
		}
		if stop && f.headN == 0 {
			return i
		}
		if i == len(p) {
			return i
		}
		f.head[f.headN] = p[i]
		f.headN++
		i++
		if f.headN >= 2 && int(f.headN) == wsHeadLen(f.head[1]) {
			f.startPayload()
		}
	}
}

// wsHeadLen is the length of a frame head whose second byte is b1: 2 bytes, then an
// extended length of 2 or 8 bytes (7-bit length 126 or 127), then a 4-byte masking
// key if the mask bit is set (a member should not mask; the bytes are still counted).
func wsHeadLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// startPayload takes the complete head in f.head: the payload length, and whether the
// frame is a close frame (opcode 8).
func (f *wsFrames) startPayload() {
	h := &f.head
	var n uint64
	switch l := h[1] & 0x7f; l {
	case 126:
		n = uint64(h[2])<<8 | uint64(h[3])
	case 127:
		for _, b := range h[2:10] {
			n = n<<8 | uint64(b)
		}
	default:
		n = uint64(l)
	}
	if h[0]&0x0f == 0x8 {
		f.closed = true
	}
	f.left, f.headN = n, 0
}
