package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
	"github.com/sessiongate/sessiongate/router"
)

// Default returns the configuration used for every key the file leaves out.
// It has no target groups, so it does not validate on its own.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:8080",
		ShutdownTimeout: 30 * time.Second,
		Admin:           Admin{Listen: "127.0.0.1:9090"},
		Log: Log{
			Level:        "info",
			Format:       "json",
			Access:       true,
			AccessSample: 1,
			AccessFormat: "json",
		},
		Server: Server{
			ReadTimeout:     30 * time.Second,
			WriteTimeout:    60 * time.Second,
			IdleTimeout:     90 * time.Second,
			MaxHeaderBytes:  16384,
			MaxBodyBytes:    10 << 20,
			BufferBodyBytes: 65536,
			MaxConns:        0,
			HeaderTimeout:   10 * time.Second,

			PathNormalization:  "reject",
			TunnelIdleTimeout:  time.Hour,
			CloseTunnelsOnDown: true,
		},
		Client: Client{
			DialTimeout:  2 * time.Second,
			ReadTimeout:  30 * time.Second,
			WriteTimeout: 30 * time.Second,
			IdleTimeout:  60 * time.Second,
			MaxConns:     1024,
		},
		Retry: Retry{
			MaxRetries:          1,
			RetryBuffer:         65536,
			IdempotentOnTimeout: true,
		},
		Session: Session{
			BoundWindow: time.Minute,
			Cookies:     []string{"JSESSIONID"},
			URLParam:    "jsessionid",
			Affinity:    []string{router.ResolveRoute.String(), router.ResolveLearned.String(), router.ResolveHash.String()},
			RouteFormat: router.FormatAuto.String(),
			Balance:     router.BalanceRoundRobin.String(),
			Learned: Learned{
				MaxSessions: 1000000,
				TTL:         30 * time.Minute,
			},
			Cookie: AffinityCookie{Name: "SGROUTE", HTTPOnly: true, SameSite: "Lax"},
			Shared: Shared{
				Budget:    2 * time.Millisecond,
				KeyPrefix: "sg:",
			},
		},
	}
}

// defaultHealthCheck is the health check of a group whose file omits keys of it.
func defaultHealthCheck() HealthCheck {
	return HealthCheck{
		Interval:           5 * time.Second,
		Timeout:            2 * time.Second,
		HealthyThreshold:   2,
		UnhealthyThreshold: 2,
		UnhealthyInterval:  time.Second,
		ExpectedStatus:     "200-399",
		Start:              router.StartHealthy.String(),
	}
}

// defaultPassive is the passive ejection of a group whose file omits keys of it.
func defaultPassive() Passive {
	return Passive{
		ConsecutiveFailures: 5,
		Ejection:            10 * time.Second,
		MaxEjection:         5 * time.Minute,
	}
}

// defaultGroup is a group whose file gives none of its keys: path_prefix "/", the
// default health check (no path: no active checks) and passive ejection, drain_timeout
// 10m.
func defaultGroup() Group {
	return Group{PathPrefix: "/", HealthCheck: defaultHealthCheck(), Passive: defaultPassive(), DrainTimeout: 10 * time.Minute}
}

// defaultMember is a member whose file gives none of its keys: weight 1, ready. Its
// route, when omitted, is its id (UnmarshalYAML, NewMember).
func defaultMember() Member {
	return Member{Weight: 1, State: router.AdminReady.String()}
}

// defaultListener is a listener whose file gives none of its keys but its address:
// plain HTTP, HTTP/2 offered once it has TLS.
func defaultListener() Listener { return Listener{HTTP2: true, Dataplane: DataplaneFasthttp} }

// defaultListenerTLS is the TLS of a listener whose file omits keys of it: TLS 1.2 and
// up, no client certificates.
func defaultListenerTLS() ListenerTLS {
	return ListenerTLS{MinVersion: TLS12, ClientAuth: ClientAuthNone}
}

// TLS versions and client_auth values of listeners[].tls.
const (
	TLS12 = "1.2"
	TLS13 = "1.3"

	ClientAuthNone    = "none"
	ClientAuthRequest = "request"
	ClientAuthRequire = "require"
)

type (
	listenerYAML    Listener
	listenerTLSYAML ListenerTLS
)

// UnmarshalYAML decodes one listener, starting from its defaults (http2 true).
func (l *Listener) UnmarshalYAML(unmarshal func(any) error) error {
	v := listenerYAML(defaultListener())
	if err := unmarshal(&v); err != nil {
		return err
	}
	*l = Listener(v)
	return nil
}

// UnmarshalYAML decodes a listener's TLS, starting from its defaults (min_version 1.2,
// client_auth none).
func (t *ListenerTLS) UnmarshalYAML(unmarshal func(any) error) error {
	v := listenerTLSYAML(defaultListenerTLS())
	if err := unmarshal(&v); err != nil {
		return err
	}
	*t = ListenerTLS(v)
	return nil
}

// ClientListeners are the client-facing listeners: listeners, or the one plain
// listener on listen when it is empty.
func (c *Config) ClientListeners() []Listener {
	if len(c.Listeners) > 0 {
		return c.Listeners
	}
	l := defaultListener()
	l.Address = c.Listen
	return []Listener{l}
}

// defaultMemberTLS is a group's tls block whose file gives none of its keys ("tls:
// {}"): HTTPS verified against the system roots, the name from each member's address,
// no client certificate. A group without a tls block has none (plain HTTP).
func defaultMemberTLS() MemberTLS {
	return MemberTLS{}
}

// groupYAML, healthCheckYAML, memberYAML and memberTLSYAML have the fields of their
// config types without the UnmarshalYAML methods, so the methods can decode into them.
type (
	groupYAML       Group
	healthCheckYAML HealthCheck
	memberYAML      Member
	memberTLSYAML   MemberTLS
)

// UnmarshalYAML decodes a group's tls block from the config file, starting from its
// defaults for the keys the file omits.
func (t *MemberTLS) UnmarshalYAML(unmarshal func(any) error) error {
	v := memberTLSYAML(defaultMemberTLS())
	if err := unmarshal(&v); err != nil {
		return err
	}
	*t = MemberTLS(v)
	return nil
}

// UnmarshalYAML decodes one target group from the config file. It exists so that each
// group in the list starts from its defaults (path_prefix "/", the default health check):
// keys the file omits keep them, and keys it sets, even to a bad value, replace them.
func (g *Group) UnmarshalYAML(unmarshal func(any) error) error {
	v := groupYAML(defaultGroup())
	if err := unmarshal(&v); err != nil {
		return err
	}
	*g = Group(v)
	return nil
}

// UnmarshalYAML decodes a group's health check from the config file, starting from the
// defaults (interval 5s, timeout 2s, thresholds 2) for the keys the file omits.
func (h *HealthCheck) UnmarshalYAML(unmarshal func(any) error) error {
	v := healthCheckYAML(defaultHealthCheck())
	if err := unmarshal(&v); err != nil {
		return err
	}
	*h = HealthCheck(v)
	return nil
}

// UnmarshalYAML decodes one member from the config file. An omitted weight is 1 and an
// omitted or empty route is the member id; an explicit weight, even 0, is kept for
// Validate to judge.
func (m *Member) UnmarshalYAML(unmarshal func(any) error) error {
	v := memberYAML(defaultMember())
	if err := unmarshal(&v); err != nil {
		return err
	}
	if v.Route == "" {
		v.Route = v.ID
	}
	*m = Member(v)
	return nil
}

// Load reads the config file at path and parses it with Parse.
// Read errors name the path; parse and validation errors are Parse's.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data)
}

// LoadOverride is Load with override applied to the decoded file before it
// is validated, so that flags can replace any value of the file (a bad one included)
// and validation still names the line of the keys that came from the file.
func LoadOverride(path string, override func(*Config)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(data, override)
}

// Parse decodes a YAML config file over Default and validates the result.
// Decoding is strict: an unknown key, a value of the wrong type or a bad duration is an
// error naming the line and the field path. Every unknown key is reported, with the
// key it is most likely a misspelling of, or with an indentation hint when it is a key
// of an enclosing or preceding mapping:
//
//	config: line 7: target_groups[0].members[0].wieght: unknown field; did you mean "weight"?
//
// A tab in the indentation and a key out of line with its siblings are reported with
// a hint rather than the YAML parser's message.
//
// Validation reports every problem at once (see Validate), each with the line of the
// key when the file has it. A value left out or given as null keeps its default.
// The returned Config is valid.
func Parse(data []byte) (*Config, error) { return parse(data, nil) }

func parse(data []byte, override func(*Config)) (*Config, error) {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, syntaxError(data, err)
	}
	var body ast.Node
	for i, doc := range file.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if body != nil {
			return nil, &configError{line: tokenLine(doc.Body.GetToken()),
				detail: fmt.Sprintf("document %d: the configuration must be a single YAML document", i+1)}
		}
		body = doc.Body
	}

	cfg := Default()
	if body != nil {
		var errs []error
		ast.Walk(&tagFinder{errs: &errs}, body)
		if len(errs) == 0 {
			checkNode(body, reflect.TypeFor[Config](), nil, &errs)
		}
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		if err := decodeBody(body, &cfg); err != nil {
			return nil, yamlError(body, err)
		}
	}

	lines := keyLines(body)
	if override != nil {
		override(&cfg)
	}
	problems := cfg.validate()
	if _, ok := lines["listen"]; ok && len(cfg.Listeners) > 0 {
		problems = append(problems, &configError{path: "listen", detail: strconv.Quote(cfg.Listen) + ": set listen or listeners, not both"})
	}
	if len(problems) == 0 {
		return &cfg, nil
	}
	errs := make([]error, len(problems))
	for i, p := range problems {
		p.line = lines.find(p.path)
		errs[i] = p
	}
	return nil, errors.Join(errs...)
}

// errDecoderPanic marks a panic of the YAML decoder, turned into an error so that a
// bad file cannot bring the gateway down on reload. The fuzz test fails on it.
var errDecoderPanic = errors.New("config: YAML decoder failed")

// decodeBody decodes body strictly into cfg.
func decodeBody(body ast.Node, cfg *Config) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = fmt.Errorf("%w: %w", errDecoderPanic, e)
			} else {
				err = fmt.Errorf("%w: %v", errDecoderPanic, r)
			}
		}
	}()
	dec := yaml.NewDecoder(strings.NewReader(""), yaml.Strict())
	return dec.DecodeFromNode(body, cfg)
}

// tagFinder is an ast.Visitor that reports every explicit YAML tag (!!str, !foo).
// A config file has no use for them, and the decoder mishandles some of them (a
// tagged scalar decoded into a list panics in goccy/go-yaml v1.19.2).
type tagFinder struct {
	errs *[]error
}

func (f *tagFinder) Visit(n ast.Node) ast.Visitor {
	if tag, ok := n.(*ast.TagNode); ok {
		name := ""
		if tag.Start != nil {
			name = tag.Start.Value
		}
		*f.errs = append(*f.errs, &configError{
			line:   tokenLine(tag.GetToken()),
			path:   yamlPath(n),
			detail: strconv.Quote(name) + ": YAML tags are not supported; quote a value to make it a string",
		})
		return nil
	}
	return f
}

// configError is one problem with a config: a decoding error from the YAML library
// (err, with the line of its token) or a validation problem (path, value and reason).
type configError struct {
	line   int    // 1-based line in the file; 0 when unknown
	path   string // field path as YAML keys: target_groups[0].members[1].weight
	detail string // `"value": reason`, or the decoder's message
	err    error  // the YAML library's error, if any
}

func (e *configError) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.line))
		b.WriteString(": ")
	}
	if e.path != "" {
		b.WriteString(e.path)
		b.WriteString(": ")
	}
	b.WriteString(e.detail)
	return b.String()
}

func (e *configError) Unwrap() error { return e.err }

// yamlError turns an error of the YAML parser or decoder into a one-line configError
// naming the line and, when the token is found in body, the field path.
func yamlError(body ast.Node, err error) error {
	var yerr yaml.Error
	if !errors.As(err, &yerr) {
		return fmt.Errorf("config: %w", err)
	}
	tok := yerr.GetToken()
	ce := &configError{line: tokenLine(tok), err: err, detail: yerr.GetMessage()}
	node := findToken(body, tok)
	if node != nil {
		ce.path = yamlPath(node)
	}
	var (
		unknown  *yaml.UnknownFieldError
		typeErr  *yaml.TypeError
		overflow *yaml.OverflowError
		nodeType *yaml.UnexpectedNodeTypeError
	)
	switch {
	case errors.As(err, &unknown):
		ce.detail = "unknown field"
	case errors.As(err, &typeErr):
		ce.detail = nodeValue(node, tok) + ": want " + wantKind(typeErr.DstType)
	case errors.As(err, &overflow):
		ce.detail = strconv.Quote(overflow.SrcNum) + ": number out of range for " + overflow.DstType.String()
	case errors.As(err, &nodeType):
		want := nodeType.Expected.YAMLName()
		switch nodeType.Expected {
		case ast.SequenceType:
			want = "list"
		case ast.MappingType, ast.MappingValueType:
			want = "mapping"
		}
		ce.detail = nodeValue(node, tok) + ": want a " + want
	}
	return ce
}

// syntaxError turns an error of the YAML parser into a configError. The parser's
// messages for a tab in the indentation and for a key indented deeper or less deep
// than its siblings say little about the cause, so those get a hint naming the line,
// the key and what it is misaligned with; every other error is yamlError's.
func syntaxError(data []byte, err error) error {
	var syn *yaml.SyntaxError
	if errors.As(err, &syn) && tokenLine(syn.Token) > 0 {
		lines := strings.Split(string(data), "\n")
		var ce *configError
		switch syn.Message {
		case "found character '\t' that cannot start any token":
			ce = tabError(lines, tokenLine(syn.Token))
		case "mapping value is not allowed in this context":
			ce = deeperKeyError(lines, syn.Token)
		case "value is not allowed in this context":
			ce = shallowerKeyError(lines, syn.Token)
		}
		if ce != nil {
			ce.err = err
			return ce
		}
	}
	return yamlError(nil, err)
}

// sourceLine is one line of a config file split for indentation hints.
type sourceLine struct {
	indent string // leading spaces and tabs
	text   string // the rest, without a trailing comment or CR
	item   bool   // text starts a list item ("- ")
	key    string // the key the line sets, after any "- ", or ""
}

// splitLine reads line for indentation hints. It understands the plain block style
// that config files are written in and is only used to word a message.
func splitLine(line string) sourceLine {
	line = strings.TrimSuffix(line, "\r")
	rest := strings.TrimLeft(line, " \t")
	l := sourceLine{indent: line[:len(line)-len(rest)]}
	if i := strings.Index(rest, " #"); i >= 0 {
		rest = rest[:i]
	}
	if strings.HasPrefix(rest, "#") {
		rest = ""
	}
	l.text = strings.TrimRight(rest, " \t")
	if l.text == "-" || strings.HasPrefix(l.text, "- ") {
		l.item = true
		rest = strings.TrimLeft(l.text[1:], " ")
	} else {
		rest = l.text
	}
	if i := strings.Index(rest, ":"); i > 0 && (i == len(rest)-1 || rest[i+1] == ' ' || rest[i+1] == '\t') &&
		!strings.ContainsAny(rest[:i], "{}[],\"'&*!|>%@`") {
		l.key = rest[:i]
	}
	return l
}

// prefixKeys parses the first n lines of the file and returns its keys in file order,
// or nil when those lines do not parse on their own.
func prefixKeys(lines []string, n int) []*ast.MappingValueNode {
	if n <= 0 || n > len(lines) {
		return nil
	}
	file, err := parser.ParseBytes([]byte(strings.Join(lines[:n], "\n")+"\n"), 0)
	if err != nil {
		return nil
	}
	var keys keyCollector
	for _, doc := range file.Docs {
		if doc != nil && doc.Body != nil {
			ast.Walk(&keys, doc.Body)
		}
	}
	return keys
}

// keyCollector is an ast.Visitor that lists the key-value pairs of a file in order.
type keyCollector []*ast.MappingValueNode

func (c *keyCollector) Visit(n ast.Node) ast.Visitor {
	if mv, ok := n.(*ast.MappingValueNode); ok && mv.Key != nil && tokenLine(mv.Key.GetToken()) > 0 {
		*c = append(*c, mv)
	}
	return c
}

// keyOnLine returns the last key of keys written on line, or nil.
func keyOnLine(keys []*ast.MappingValueNode, line int) *ast.MappingValueNode {
	var found *ast.MappingValueNode
	for _, mv := range keys {
		if tokenLine(mv.Key.GetToken()) == line {
			found = mv
		}
	}
	return found
}

// tabError is the error for a tab in the indentation of a line, at or near line.
// The key path is given when the line before opens a block (ends in "key:"), the only
// case where the level the tab stands for is clear.
func tabError(lines []string, line int) *configError {
	hasTab := func(n int) bool {
		return n >= 1 && n <= len(lines) && strings.Contains(splitLine(lines[n-1]).indent, "\t")
	}
	if !hasTab(line) {
		line = 0
		for n := 1; n <= len(lines) && line == 0; n++ {
			if hasTab(n) {
				line = n
			}
		}
		if line == 0 {
			return nil
		}
	}
	ce := &configError{line: line, detail: "tab character used for indentation; YAML indents with spaces only"}
	l := splitLine(lines[line-1])
	p := line - 1
	for p >= 1 && splitLine(lines[p-1]).text == "" {
		p--
	}
	if p < 1 {
		return ce
	}
	if pl := splitLine(lines[p-1]); pl.key == "" || !strings.HasSuffix(pl.text, ":") {
		return ce
	}
	parent := keyOnLine(prefixKeys(lines, p), p)
	if parent == nil {
		return ce
	}
	path := yamlPath(parent.Key)
	if l.item {
		path += "[0]"
	}
	if l.key != "" {
		path += "." + l.key
	}
	ce.path = path
	return ce
}

// deeperKeyError is the error for a key indented deeper than the key before it, which
// the parser reads as the continuation of that key's scalar value (tok) and then
// rejects at the ':'. It names the line of the misplaced key.
func deeperKeyError(lines []string, tok *token.Token) *configError {
	start := tokenLine(tok)
	for n := start + 1; n <= len(lines) && n <= start+50; n++ {
		l := splitLine(lines[n-1])
		if l.key == "" || l.item {
			continue
		}
		ce := &configError{line: n}
		prev := keyOnLine(prefixKeys(lines, start), start)
		if prev == nil {
			ce.detail = fmt.Sprintf("%q is indented deeper than the key on line %d; check the indentation: keys of one mapping start in the same column", l.key, start)
			return ce
		}
		prevPath := yamlPath(prev.Key)
		if i := strings.LastIndexByte(prevPath, '.'); i >= 0 {
			ce.path = prevPath[:i+1] + l.key
		} else {
			ce.path = l.key
		}
		ce.detail = fmt.Sprintf("%q is indented deeper than %s on line %d; check the indentation: keys of one mapping start in the same column",
			l.key, prevPath, start)
		return ce
	}
	return nil
}

// shallowerKeyError is the error for a key (tok) indented less than its siblings but
// more than their parent, so that it belongs to no mapping. It names the keys above
// whose columns it falls between.
func shallowerKeyError(lines []string, tok *token.Token) *configError {
	line, col := tokenLine(tok), tok.Position.Column
	if line > len(lines) {
		return nil
	}
	l := splitLine(lines[line-1])
	what, rule := strconv.Quote(l.key), "keys of one mapping start in the same column"
	switch {
	case l.item:
		what, rule = "the list item "+strconv.Quote(l.text), "the items of one list start in the same column"
	case l.key == "":
		return nil
	}
	keys := prefixKeys(lines, line-1)
	var outer, inner *ast.MappingValueNode
	for _, mv := range keys {
		c := mv.Key.GetToken().Position.Column
		switch {
		case c < col:
			outer, inner = mv, nil
		case c > col && (inner == nil || c <= inner.Key.GetToken().Position.Column):
			inner = mv
		}
	}
	if inner == nil {
		return nil
	}
	at := func(mv *ast.MappingValueNode) string {
		p := mv.Key.GetToken().Position
		return fmt.Sprintf("%s (line %d, column %d)", yamlPath(mv.Key), p.Line, p.Column)
	}
	detail := fmt.Sprintf("%s (column %d) is indented less than %s", what, col, at(inner))
	if outer != nil {
		detail += " and more than " + at(outer)
	}
	return &configError{line: line, detail: detail + "; check the indentation: " + rule}
}

// wantKind names the YAML value a Go type is decoded from, for error messages.
func wantKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	if t == reflect.TypeFor[time.Duration]() {
		return `a duration such as "5s"`
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	}
	return t.String()
}

// nodeValue shows the value at node for an error message: a scalar quoted, a
// collection by its kind.
func nodeValue(node ast.Node, tok *token.Token) string {
	switch node.(type) {
	case *ast.SequenceNode:
		return "a list"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	}
	if tok == nil {
		return "value"
	}
	return strconv.Quote(tok.Value)
}

// tokenLine is the 1-based line of tok, or 0 without a token.
func tokenLine(tok *token.Token) int {
	if tok == nil || tok.Position == nil {
		return 0
	}
	return tok.Position.Line
}

// yamlPath is the field path of node as used in error messages: the parser's
// YAMLPath without its "$" root.
func yamlPath(node ast.Node) string {
	p := node.GetPath()
	p = strings.TrimPrefix(p, "$")
	return strings.TrimPrefix(p, ".")
}

// tokenFinder is an ast.Visitor that stops at the first node holding tok.
type tokenFinder struct {
	tok   *token.Token
	found ast.Node
}

func (f *tokenFinder) Visit(n ast.Node) ast.Visitor {
	if f.found != nil {
		return nil
	}
	if n.GetToken() == f.tok {
		f.found = n
		return nil
	}
	return f
}

// findToken returns the outermost node of body whose token is tok, or nil.
func findToken(body ast.Node, tok *token.Token) ast.Node {
	if body == nil || tok == nil {
		return nil
	}
	f := &tokenFinder{tok: tok}
	ast.Walk(f, body)
	return f.found
}

// lineIndex maps field paths to the line where the file sets them.
type lineIndex map[string]int

func (x lineIndex) Visit(n ast.Node) ast.Visitor {
	line := tokenLine(n.GetToken())
	if line == 0 {
		return x
	}
	p := yamlPath(n)
	if _, ok := x[p]; !ok {
		x[p] = line
	}
	return x
}

// keyLines indexes the lines of every path in body.
func keyLines(body ast.Node) lineIndex {
	x := lineIndex{}
	if body != nil {
		ast.Walk(x, body)
	}
	return x
}

// find returns the line of path, or of its nearest ancestor the file sets (a value
// filled in by a default has no line of its own), or 0.
func (x lineIndex) find(path string) int {
	for path != "" {
		if line, ok := x[path]; ok {
			return line
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// checkNode reports, before decoding, the values of body that the decoder would not
// report well: every unknown key (the decoder stops at one, picked at random among the
// keys of a mapping), with a suggestion for a near miss or a hint when the key belongs
// to an enclosing or preceding mapping; a bad duration (the decoder returns
// time.ParseDuration's error without a position); and a null list item where a
// mapping is expected (the decoder makes it a zero value without running its
// defaults). It walks node alongside the Go type t; outer holds the enclosing
// mappings, outermost first. Every other mismatch is left to the decoder.
func checkNode(node ast.Node, t reflect.Type, outer []mapScope, errs *[]error) {
	node = unwrapAnchor(node)
	if node == nil {
		return
	}
	if _, ok := node.(*ast.AliasNode); ok {
		return
	}
	for t.Kind() == reflect.Pointer { // an optional block (tls): checked as its struct
		t = t.Elem()
	}
	if t == reflect.TypeFor[time.Duration]() {
		switch n := node.(type) {
		case *ast.NullNode:
			return
		case *ast.StringNode:
			if _, err := time.ParseDuration(n.Value); err == nil {
				return
			}
		}
		*errs = append(*errs, &configError{
			line:   tokenLine(node.GetToken()),
			path:   yamlPath(node),
			detail: nodeValue(node, node.GetToken()) + `: want a duration such as "500ms", "5s" or "30m"`,
		})
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := node.(ast.MapNode)
		if !ok {
			return
		}
		here := append(outer[:len(outer):len(outer)], mapScope{t: t, node: node})
		var (
			prev     ast.Node // value of the previous known key
			prevType reflect.Type
			last     []mapScope // lastMappings(prev, prevType), computed for the first unknown key after prev
			lastOK   bool
		)
		it := m.MapRange()
		for it.Next() {
			if it.Key().IsMergeKey() {
				continue
			}
			key, ok := keyName(it.Key())
			if !ok {
				continue
			}
			if f, ok := fieldByKey(t, key); ok {
				checkNode(it.Value(), f.Type, here, errs)
				prev, prevType, lastOK = it.Value(), f.Type, false
				continue
			}
			if !lastOK {
				last, lastOK = lastMappings(prev, prevType), true
			}
			*errs = append(*errs, unknownKey(it.Key(), key, here, last))
		}
	case reflect.Slice:
		seq, ok := node.(*ast.SequenceNode)
		if !ok {
			return
		}
		elem := t.Elem()
		for _, v := range seq.Values {
			if _, isNull := v.(*ast.NullNode); isNull && elem.Kind() == reflect.Struct {
				*errs = append(*errs, &configError{
					line:   tokenLine(v.GetToken()),
					path:   yamlPath(v),
					detail: "null: want a mapping",
				})
				continue
			}
			checkNode(v, elem, outer, errs)
		}
	}
}

// mapScope is a mapping of the file and the struct type it decodes into.
type mapScope struct {
	t    reflect.Type
	node ast.Node
}

// unwrapAnchor returns the value of an anchored node, or node itself.
func unwrapAnchor(node ast.Node) ast.Node {
	for {
		a, ok := node.(*ast.AnchorNode)
		if !ok {
			return node
		}
		node = a.Value
	}
}

// keyName is the text of a mapping key as the decoder matches it against field names.
// ok is false for a key that checkNode leaves to the decoder (an alias, or no token).
func keyName(key ast.MapKeyNode) (name string, ok bool) {
	var n ast.Node = key
	if k, isKey := n.(*ast.MappingKeyNode); isKey {
		n = k.Value
	}
	n = unwrapAnchor(n)
	switch k := n.(type) {
	case nil, *ast.AliasNode:
		return "", false
	case *ast.StringNode:
		return k.Value, true
	}
	tok := n.GetToken()
	if tok == nil {
		return "", false
	}
	return tok.Value, true
}

// unknownKey is the error for key, which is not a field of the innermost mapping of
// scopes. It suggests a field of that mapping spelt the same but for case, '-' or '_';
// failing that, when key is a field of one of the mappings in last (see lastMappings)
// or of an enclosing mapping, it says so, as the key is then most likely indented at
// the wrong level; failing that, it suggests a field spelt almost the same.
func unknownKey(keyNode ast.MapKeyNode, key string, scopes []mapScope, last []mapScope) error {
	tok := keyNode.GetToken()
	ce := &configError{
		line:   tokenLine(tok),
		path:   yamlPath(keyNode),
		detail: "unknown field",
		err:    &yaml.UnknownFieldError{Message: fmt.Sprintf("unknown field %q", key), Token: tok},
	}
	here := scopes[len(scopes)-1]
	suggestion, dist := suggestKey(here.t, key)
	if suggestion != "" && dist == 0 {
		ce.detail += fmt.Sprintf("; did you mean %q?", suggestion)
		return ce
	}
	var owner ast.Node
	found := false
	for _, s := range last {
		if _, ok := fieldByKey(s.t, key); ok {
			owner, found = s.node, true
			break
		}
	}
	for i := len(scopes) - 2; i >= 0 && !found; i-- {
		if _, ok := fieldByKey(scopes[i].t, key); ok {
			owner, found = scopes[i].node, true
		}
	}
	switch {
	case found:
		ce.detail += fmt.Sprintf("; check the indentation: %q is a key of %s, not of %s",
			key, mappingName(owner), mappingName(here.node))
	case suggestion != "":
		ce.detail += fmt.Sprintf("; did you mean %q?", suggestion)
	}
	return ce
}

// lastMappings follows node (of type t) through the mappings written last in it (the
// value of the last key of a mapping, the last item of a list) and returns them,
// outermost first. A key of one of them found after node was most likely meant to be
// indented under it.
func lastMappings(node ast.Node, t reflect.Type) []mapScope {
	var chain []mapScope
	for depth := 0; node != nil && t != nil && depth < 16; depth++ {
		node = unwrapAnchor(node)
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			m, ok := node.(ast.MapNode)
			if !ok || t == reflect.TypeFor[time.Duration]() {
				return chain
			}
			chain = append(chain, mapScope{t: t, node: node})
			var next ast.Node
			var nextType reflect.Type
			it := m.MapRange()
			for it.Next() {
				if name, ok := keyName(it.Key()); ok && !it.Key().IsMergeKey() {
					if f, ok := fieldByKey(t, name); ok {
						next, nextType = it.Value(), f.Type
					}
				}
			}
			node, t = next, nextType
		case reflect.Slice:
			seq, ok := node.(*ast.SequenceNode)
			if !ok || len(seq.Values) == 0 {
				return chain
			}
			node, t = seq.Values[len(seq.Values)-1], t.Elem()
		default:
			return chain
		}
	}
	return chain
}

// mappingName names a mapping of the file by its path, for hints.
func mappingName(node ast.Node) string {
	if p := yamlPath(node); p != "" {
		return p
	}
	return "the top level"
}

// suggestKey returns the field of struct type t whose yaml name is closest to key, and
// its edit distance, or "" when none is close. Names are compared without case, '-'
// and '_', so "Listen", "max-conns" and "routeformat" are at distance 0; the distance
// allowed grows with the length of key, from 1 to 3.
func suggestKey(t reflect.Type, key string) (string, int) {
	k := normalizeKey(key)
	if len(k) == 0 || len(k) > 64 {
		return "", 0
	}
	limit := min(max(len(k)/3, 1), 3)
	best, bestDist := "", limit+1
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if d := editDistance(k, normalizeKey(name)); d < bestDist {
			best, bestDist = name, d
		}
	}
	return best, bestDist
}

// normalizeKey lower-cases key and drops '-' and '_', for suggestKey.
func normalizeKey(key string) string {
	b := make([]byte, 0, len(key))
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '-' || c == '_':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}

// editDistance is the optimal string alignment distance between a and b: the number
// of inserted, deleted or replaced bytes and swapped adjacent bytes.
func editDistance(a, b string) int {
	// Three rows of the dynamic programming table: i-2, i-1 and i.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// fieldByKey finds the field of struct type t whose yaml tag names key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// NewGroup is a group with every default, for configurations built in code
// (the demo, tests): what a file gets for a group with only name, path_prefix and
// members. Its health check has no path (no active checks).
func NewGroup(name, prefix string, members ...Member) Group {
	g := defaultGroup()
	g.Name, g.PathPrefix, g.Members = name, prefix, members
	return g
}

// NewMember is a ready member of weight 1 whose route is its id.
func NewMember(id, address string) Member {
	m := defaultMember()
	m.ID, m.Address, m.Route = id, address, id
	return m
}
