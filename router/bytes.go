package router

// Hot-path byte constants live here, as package-level vars, so that comparisons against
// them do not build a new slice per call.
var (
	strHTTP  = []byte("http://")
	strHTTPS = []byte("https://")
)

var strSlash = []byte("/")
