//go:build !linux

package gateway

const epollAvailable = false
