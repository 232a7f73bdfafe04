//go:build linux

package gateway

import (
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"
)

// BenchmarkLoopbackPair measures what a proxied request pays the kernel at least: one
// 200-byte send on a loopback TCP connection and the receive of it at the other end,
// on one thread, with no wake-up (loopback does the receiver's TCP work in the
// sender's system call). A proxy does two such pairs per request (client in, member
// out; member in, client out). Variants: read(2) and write(2) (what the loop used),
// recvfrom(2) and sendto(2) (what it uses), and io_uring (what issue 14 proposed
// next): the send and the receive in one io_uring_enter, the receive queued first
// (it waits on the socket, as a member's answer does), and eight pairs per enter.
//
//	go test -run '^$' -bench LoopbackPair -count 3 ./gateway/
func BenchmarkLoopbackPair(b *testing.B) {
	a, z := loopbackPair(b)
	msg := make([]byte, 200)
	buf := make([]byte, 4096)
	p, q := uintptr(unsafePointer(msg)), uintptr(unsafePointer(buf))
	b.Run("write-read", func(b *testing.B) {
		for range b.N {
			syscall.RawSyscall(syscall.SYS_WRITE, uintptr(a), p, 200)
			syscall.RawSyscall(syscall.SYS_READ, uintptr(z), q, 4096)
		}
	})
	b.Run("sendto-recvfrom", func(b *testing.B) {
		for range b.N {
			sysSend(a, msg)
			sysRecv(z, buf)
		}
	})
	r, err := newBenchRing(64)
	if err != nil {
		b.Logf("io_uring: %v: its variants skipped", err)
		return
	}
	defer syscall.Close(r.fd)
	b.Run("io_uring", func(b *testing.B) {
		for range b.N {
			r.prep(uringSend, a, msg)
			r.prep(uringRecv, z, buf)
			r.submitWait(b, 2)
		}
	})
	b.Run("io_uring-recv-first", func(b *testing.B) {
		for range b.N {
			r.prep(uringRecv, z, buf)
			r.prep(uringSend, a, msg)
			r.submitWait(b, 2)
		}
	})
	b.Run("io_uring-batch8", func(b *testing.B) {
		for i := 0; i < b.N; i += 8 {
			for range 8 {
				r.prep(uringSend, a, msg)
				r.prep(uringRecv, z, buf[:200])
			}
			r.submitWait(b, 16)
		}
	})
}

// loopbackPair returns the descriptors of the two ends of a loopback TCP connection,
// blocking (a receive after its send on one thread always finds the bytes).
func loopbackPair(b *testing.B) (int, int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c2 := <-acc
	if c2 == nil {
		b.Fatal("accept failed")
	}
	fds := [2]int{}
	for i, c := range []net.Conn{c1, c2} {
		f, err := c.(*net.TCPConn).File() // a blocking dup
		if err != nil {
			b.Fatal(err)
		}
		fds[i] = int(f.Fd())
		b.Cleanup(func() { f.Close(); c.Close() })
	}
	return fds[0], fds[1]
}

const (
	uringSend = 26 // IORING_OP_SEND
	uringRecv = 27 // IORING_OP_RECV
)

// benchRing is the least of an io_uring that BenchmarkLoopbackPair needs.
type benchRing struct {
	fd             int
	sqTail         *uint32
	sqMask, tail   uint32
	sqArray        []uint32
	sqes           []uringSQE
	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []uringCQE
	queued         uint32
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff, cqOff                                                           [10]uint32
}

type uringSQE struct {
	opcode, flags uint8
	ioprio        uint16
	fd            int32
	off, addr     uint64
	len, opFlags  uint32
	userData      uint64
	_             [24]byte
}

type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

func newBenchRing(entries uint32) (*benchRing, error) {
	var p uringParams
	fd, _, e := syscall.Syscall(425, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0) // io_uring_setup
	if e != 0 {
		return nil, e
	}
	r := &benchRing{fd: int(fd)}
	size := max(p.sqOff[6]+p.sqEntries*4, p.cqOff[5]+p.cqEntries*16)
	m, err := syscall.Mmap(r.fd, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		syscall.Close(r.fd)
		return nil, err
	}
	base := unsafe.Pointer(&m[0])
	r.sqTail = (*uint32)(unsafe.Add(base, p.sqOff[1]))
	r.sqMask = *(*uint32)(unsafe.Add(base, p.sqOff[2]))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff[6])), p.sqEntries)
	r.cqHead = (*uint32)(unsafe.Add(base, p.cqOff[0]))
	r.cqTail = (*uint32)(unsafe.Add(base, p.cqOff[1]))
	r.cqMask = *(*uint32)(unsafe.Add(base, p.cqOff[2]))
	r.cqes = unsafe.Slice((*uringCQE)(unsafe.Add(base, p.cqOff[5])), p.cqEntries)
	s, err := syscall.Mmap(r.fd, 0x10000000, int(p.sqEntries)*64, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		syscall.Close(r.fd)
		return nil, err
	}
	r.sqes = unsafe.Slice((*uringSQE)(unsafe.Pointer(&s[0])), p.sqEntries)
	r.tail = *r.sqTail
	return r, nil
}

func (r *benchRing) prep(op uint8, fd int, buf []byte) {
	i := r.tail & r.sqMask
	var flags uint32
	if op == uringSend {
		flags = syscall.MSG_NOSIGNAL
	}
	r.sqes[i] = uringSQE{opcode: op, fd: int32(fd), addr: uint64(uintptr(unsafePointer(buf))), len: uint32(len(buf)), opFlags: flags}
	r.sqArray[i] = i
	r.tail++
	r.queued++
}

// submitWait submits what is queued and reaps n completions, each a success.
func (r *benchRing) submitWait(b *testing.B, n int) {
	atomic.StoreUint32(r.sqTail, r.tail)
	for got := 0; got < n; {
		_, _, e := syscall.Syscall6(426, uintptr(r.fd), uintptr(r.queued), uintptr(n-got), 1, 0, 0) // io_uring_enter, GETEVENTS
		if e != 0 && e != syscall.EINTR {
			b.Fatalf("io_uring_enter: %v", e)
		}
		r.queued = 0
		h, t := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
		for ; h != t; h++ {
			if c := r.cqes[h&r.cqMask]; c.res < 0 {
				b.Fatalf("io_uring completion: %v", syscall.Errno(-c.res))
			}
			got++
		}
		atomic.StoreUint32(r.cqHead, h)
	}
}
