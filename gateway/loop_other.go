//go:build !linux

package gateway

import (
	"errors"
	"net"

	"github.com/sessiongate/sessiongate/router"
)

// loops are the event loops of epoll listeners: Linux only (config refuses
// dataplane: epoll elsewhere).
type loops struct{}

var errNoLoops = errors.New("gateway: dataplane epoll needs Linux")

func (s *Server) startLoops() (*loops, error) { return nil, errNoLoops }

func (lp *loops) addListener(net.Listener, *listenerInfo) error { return errNoLoops }

func (lp *loops) open() int64 { return 0 }

func (lp *loops) stopAccepting(<-chan struct{}) {}

func (lp *loops) shutdown(<-chan struct{}) {}

func (lp *loops) memberOut(*router.MemberState) {}

// errMemberHeadLarge is the event loops' member head too large (kindOf knows it).
var errMemberHeadLarge = errors.New("gateway: member response head larger than the read buffer")
