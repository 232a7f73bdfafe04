package gateway

// Hot-path byte constants.
var (
	strConnection      = []byte("Connection")
	strLocation        = []byte("Location")
	strXForwardedFor   = []byte("X-Forwarded-For")
	strXForwardedProto = []byte("X-Forwarded-Proto")
	strXForwardedHost  = []byte("X-Forwarded-Host")
	strXForwardedPort  = []byte("X-Forwarded-Port")
	strSetCookie       = []byte("Set-Cookie")
	strCookie          = []byte("Cookie")

	strStrictTransportSecurity = []byte("Strict-Transport-Security")
	strRedirectBody            = []byte("308 Permanent Redirect: use https\n")
	strHTTP                    = []byte("http")
	strHTTPSScheme             = []byte("https")
	strCommaSpace              = []byte(", ")
	strHTTP11                  = []byte("HTTP/1.1")
	strSchemeSep               = []byte("://")
	strHTTPScheme7             = []byte("http://")
	strHTTPSScheme8            = []byte("https://")
	strSlash                   = []byte("/")
	strUpgrade                 = []byte("Upgrade") // the header's canonical name, and Connection's token
	strExpect                  = []byte("Expect")
	strH2C                     = []byte("h2c")
	strWebSocket               = []byte("websocket")
	// wsClose1001 is the close frame the gateway sends a WebSocket client whose tunnel
	// it ends: status 1001 Going Away (RFC 6455 section 7.4.1), unmasked as from a server.
	wsClose1001 = []byte{0x88, 0x02, 0x03, 0xe9}
)

// endToEndHeaders are never removed because Connection names them (see endToEnd).
var endToEndHeaders = [][]byte{
	[]byte("Content-Length"),
	[]byte("Transfer-Encoding"),
	[]byte("Host"),
	[]byte("Cookie"),
}

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1 (and the older ones
// still seen), removed before forwarding in either direction, after the headers named
// in Connection. fasthttp itself manages Transfer-Encoding and Connection: close.
var hopHeaders = [][]byte{
	[]byte("Connection"),
	[]byte("Proxy-Connection"), // non-standard, sent by old clients
	[]byte("Keep-Alive"),
	[]byte("Proxy-Authenticate"),
	[]byte("Proxy-Authorization"),
	[]byte("Te"),      // canonicalised "TE"
	[]byte("Trailer"), // not trailers themselves, the announcement
	[]byte("Upgrade"),
}
