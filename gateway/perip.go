package gateway

import (
	"net/netip"
	"sync"
)

// perIPCount is server.max_conns_per_ip: the open client connections of each address,
// HTTP/1.1 and HTTP/2, plain and TLS alike. It is taken when a connection is accepted
// (after its PROXY header, so the address is the client's) and given back when it
// closes; the lock is held once per connection, never per request.
type perIPCount struct {
	max int32 // 0: no limit, nothing counted
	mu  sync.Mutex
	m   map[netip.Addr]int32
}

func (p *perIPCount) init(max int) {
	p.max = int32(max)
	p.m = map[netip.Addr]int32{}
}

// add counts a new connection from ip; false when ip is at the limit.
func (p *perIPCount) add(ip netip.Addr) bool {
	if p.max == 0 || !ip.IsValid() {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[ip] >= p.max {
		return false
	}
	p.m[ip]++
	return true
}

// remove gives back a connection add counted.
func (p *perIPCount) remove(ip netip.Addr) {
	if p.max == 0 || !ip.IsValid() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.m[ip] - 1; n > 0 {
		p.m[ip] = n
	} else {
		delete(p.m, ip)
	}
}
