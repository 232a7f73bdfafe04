//go:build linux

package gateway

// epollAvailable: the epoll data path can be benchmarked here.
const epollAvailable = true
