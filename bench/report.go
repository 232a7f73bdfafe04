package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/sessiongate/sessiongate/config"
)

// Report is the result of a Run; `-json` prints it as is.
type Report struct {
	Sessions int           `json:"sessions"`
	Conns    int           `json:"conns"`
	Duration time.Duration `json:"duration_ns"`
	Requests int64         `json:"requests,omitempty"`
	Warmup   time.Duration `json:"warmup_ns"`
	Rate     float64       `json:"rate,omitempty"`
	Mix      Mix           `json:"mix"`
	Members  int           `json:"members"`
	Mode     string        `json:"mode"`
	Taskset  string        `json:"taskset,omitempty"`
	// Rounds is how many times each path was measured (merged in its phase).
	Rounds int `json:"rounds"`
	// ReusePort: the gateway ran one SO_REUSEPORT listener per CPU.
	ReusePort bool `json:"reuseport,omitempty"`
	// Dataplane is the gateway's data path (Options.Dataplane): fasthttp, epoll (the
	// phase PhaseEpoll) or both.
	Dataplane string `json:"dataplane,omitempty"`
	// TLS: the TLS bench (Options.TLS); every phase has a Load.
	TLS bool `json:"tls,omitempty"`
	// H2Conns and H2Streams are the connections and the concurrent streams on each
	// of the h2 load (TLS bench only).
	H2Conns   int     `json:"h2_conns,omitempty"`
	H2Streams int     `json:"h2_streams,omitempty"`
	Machine   Machine `json:"machine"`
	Phases    []Phase `json:"phases"`
	// Notes say what was skipped and what a figure includes.
	Notes []string `json:"notes,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPU        string `json:"cpu,omitempty"`
}

// Phase is one measured path: direct, sessiongate, sessiongate (epoll) (PhaseEpoll),
// haproxy, nginx or fasthttp.
type Phase struct {
	Name string `json:"name"`
	// Load is "" in the plain bench. In the TLS bench it is LoadKeepAlive (HTTPS on
	// kept connections), LoadHandshake (each request on a new TLS connection, so
	// RPS is handshakes per second and CPUPerRequest is CPU per handshake) or LoadH2
	// (HTTP/2 streams on Report.H2Conns kept connections).
	Load       string           `json:"load,omitempty"`
	Requests   int64            `json:"requests"`
	Seconds    float64          `json:"seconds"`
	RPS        float64          `json:"rps"`
	P50        time.Duration    `json:"p50_ns"`
	P90        time.Duration    `json:"p90_ns"`
	P99        time.Duration    `json:"p99_ns"`
	P999       time.Duration    `json:"p999_ns"`
	Max        time.Duration    `json:"max_ns"`
	ErrorCount int64            `json:"error_count"`
	Errors     map[string]int64 `json:"errors,omitempty"`
	// StickyViolations counts responses from a member other than the session's bound one.
	StickyViolations int64 `json:"sticky_violations"`
	// MemberForeign counts requests members received with a session that is not theirs
	// (warm-up included); it corroborates StickyViolations from the member side.
	MemberForeign int64 `json:"member_foreign"`
	// Handshakes counts the TLS handshakes of the load generator while measured: about
	// Requests with LoadHandshake, and only reconnections with LoadKeepAlive.
	Handshakes int64 `json:"handshakes,omitempty"`
	// CPUPerRequest is CPU time (user+system) per request of CPUScope.
	CPUPerRequest time.Duration `json:"cpu_per_request_ns,omitempty"`
	// CPUCores is CPU time of CPUScope per second of the phase: 1 is one core busy the
	// whole time. A proxy below its cores was not the bottleneck, and its rate is the
	// load generator's; compare CPUPerRequest then.
	CPUCores float64 `json:"cpu_cores,omitempty"`
	// CPUScope is "proxy process" (child process, /proc) or "bench process" (in-process:
	// load generator, members and gateway together; getrusage).
	CPUScope string `json:"cpu_scope,omitempty"`
	// AllocsPerRequest is heap allocations per request of the bench process
	// (in-process: load generator and members included); 0 when not measured.
	AllocsPerRequest float64 `json:"allocs_per_request,omitempty"`
	// VsDirect and VsHAProxy are this phase's ratios to those phases.
	VsDirect  *Ratios `json:"vs_direct,omitempty"`
	VsHAProxy *Ratios `json:"vs_haproxy,omitempty"`
	// BestPeer is, in the TLS bench, the peer with the highest RPS of the same Load,
	// and VsBestPeer this phase's ratios to it (sessiongate only). Target is the
	// VsBestPeer.RPS that issue 11 aims at: TargetKeepAliveTLS or TargetHandshake;
	// 0 for LoadH2, which has none. In the plain bench, BestPeer is the peer with the
	// highest RPS and Target TargetPlain.
	BestPeer   string  `json:"best_peer,omitempty"`
	VsBestPeer *Ratios `json:"vs_best_peer,omitempty"`
	Target     float64 `json:"target_rps_ratio,omitempty"`
	// VsPeers are, in the plain bench, sessiongate's ratios to each peer by name (for
	// each of its data paths: the phases sessiongate and PhaseEpoll).
	VsPeers map[string]*Ratios `json:"vs_peers,omitempty"`
	// VsFasthttpDataplane is, for the PhaseEpoll phase of a run with both data paths,
	// its ratios to the gateway on fasthttp's (the phase sessiongate).
	VsFasthttpDataplane *Ratios `json:"vs_fasthttp_dataplane,omitempty"`
	// VsKeepAlive is, for a LoadH2 phase, its ratios to the LoadKeepAlive phase of the
	// same proxy: what HTTP/2 costs or saves against HTTP/1.1 (CPU is CPU per request).
	// Its latency ratios compare H2Conns*H2Streams requests in flight with Conns.
	VsKeepAlive *Ratios `json:"vs_keep_alive,omitempty"`

	hist    *hdrhistogram.Histogram // latencies of the answered requests
	cpu     time.Duration           // CPU time of CPUScope
	mallocs uint64                  // heap allocations, when measured
}

// label names the phase in messages: its name, and its load in the TLS bench.
func (p *Phase) label() string {
	if p.Load == "" {
		return p.Name
	}
	return p.Name + " " + p.Load
}

// summarize computes the phase's figures from its histogram, counts and time.
func (p *Phase) summarize() {
	p.Requests = p.hist.TotalCount() + p.ErrorCount
	p.RPS = 0
	if p.Seconds > 0 {
		p.RPS = float64(p.Requests) / p.Seconds
	}
	p.P50 = time.Duration(p.hist.ValueAtQuantile(50))
	p.P90 = time.Duration(p.hist.ValueAtQuantile(90))
	p.P99 = time.Duration(p.hist.ValueAtQuantile(99))
	p.P999 = time.Duration(p.hist.ValueAtQuantile(99.9))
	p.Max = time.Duration(p.hist.Max())
	p.CPUPerRequest, p.AllocsPerRequest, p.CPUCores = 0, 0, 0
	if p.Requests > 0 && p.cpu > 0 {
		p.CPUPerRequest = p.cpu / time.Duration(p.Requests)
		p.CPUCores = p.cpu.Seconds() / p.Seconds
	}
	if p.Requests > 0 && p.mallocs > 0 {
		p.AllocsPerRequest = float64(p.mallocs) / float64(p.Requests)
	}
}

// merge adds another round of the same path: counts, time and CPU add up, latencies
// merge in one histogram, so the figures are those of all rounds together.
func (p *Phase) merge(q Phase) {
	p.hist.Merge(q.hist)
	p.Seconds += q.Seconds
	p.ErrorCount += q.ErrorCount
	for k, v := range q.Errors {
		p.Errors[k] += v
	}
	p.StickyViolations += q.StickyViolations
	p.MemberForeign += q.MemberForeign
	p.Handshakes += q.Handshakes
	p.cpu += q.cpu
	p.mallocs += q.mallocs
	p.summarize()
}

// Ratios compare a phase with a reference phase: this / reference.
type Ratios struct {
	RPS float64 `json:"rps"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	// CPU is the ratio of CPU per request, when both phases have it in the same scope.
	CPU float64 `json:"cpu_per_request,omitempty"`
}

func ratios(p, ref *Phase) *Ratios {
	if ref.RPS == 0 || ref.P50 == 0 || ref.P99 == 0 {
		return nil
	}
	r := &Ratios{RPS: p.RPS / ref.RPS, P50: float64(p.P50) / float64(ref.P50), P99: float64(p.P99) / float64(ref.P99)}
	if p.CPUScope == ref.CPUScope && ref.CPUPerRequest > 0 {
		r.CPU = float64(p.CPUPerRequest) / float64(ref.CPUPerRequest)
	}
	return r
}

func (r *Report) computeRatios() {
	if r.TLS {
		r.computeBestPeerRatios()
		return
	}
	direct := r.Phase("direct")
	haproxy := r.Phase("haproxy")
	for i := range r.Phases {
		p := &r.Phases[i]
		if direct != nil && p != direct {
			p.VsDirect = ratios(p, direct)
		}
		if haproxy != nil && p != haproxy && p != direct {
			p.VsHAProxy = ratios(p, haproxy)
		}
	}
	fast, epoll := r.Phase("sessiongate"), r.Phase(PhaseEpoll)
	if fast != nil && epoll != nil {
		epoll.VsFasthttpDataplane = ratios(epoll, fast)
	}
	for _, gw := range []*Phase{fast, epoll} {
		if gw == nil {
			continue
		}
		var best *Phase
		for i := range r.Phases {
			q := &r.Phases[i]
			if isGateway(q.Name) || q == direct {
				continue
			}
			if q.Name != "haproxy" {
				if rq := ratios(gw, q); rq != nil {
					if gw.VsPeers == nil {
						gw.VsPeers = map[string]*Ratios{}
					}
					gw.VsPeers[q.Name] = rq
				}
			}
			if best == nil || q.RPS > best.RPS {
				best = q
			}
		}
		if best != nil {
			gw.BestPeer, gw.VsBestPeer, gw.Target = best.Name, ratios(gw, best), TargetPlain
		}
	}
}

// isGateway reports whether the phase named name is sessiongate's, on either data path.
func isGateway(name string) bool { return name == "sessiongate" || name == PhaseEpoll }

// TargetPlain is the sessiongate/best-peer req/s ratio that issue 14 aims at in the
// plain bench's pinned layout (its CPU per request target is 0.85x).
const TargetPlain = 1.15

// computeBestPeerRatios sets, for each load, sessiongate's ratios to the peer with
// the highest RPS of that load, and each proxy's h2 ratios to its keep-alive phase.
func (r *Report) computeBestPeerRatios() {
	for i := range r.Phases {
		p := &r.Phases[i]
		if p.Load == LoadH2 {
			if ka := r.PhaseLoad(p.Name, LoadKeepAlive); ka != nil {
				p.VsKeepAlive = ratios(p, ka)
			}
		}
		if p.Name != "sessiongate" {
			continue
		}
		var best *Phase
		for j := range r.Phases {
			q := &r.Phases[j]
			if q.Name != "sessiongate" && q.Name != "direct" && q.Load == p.Load && (best == nil || q.RPS > best.RPS) {
				best = q
			}
		}
		switch p.Load {
		case LoadHandshake:
			p.Target = TargetHandshake
		case LoadH2:
			p.Target = 0
		default:
			p.Target = TargetKeepAliveTLS
		}
		if best != nil {
			p.BestPeer, p.VsBestPeer = best.Name, ratios(p, best)
		}
	}
}

// Phase returns the phase named name, or nil; in the TLS bench, its first Load.
func (r *Report) Phase(name string) *Phase {
	for i := range r.Phases {
		if r.Phases[i].Name == name {
			return &r.Phases[i]
		}
	}
	return nil
}

// PhaseLoad returns the phase named name with that Load, or nil.
func (r *Report) PhaseLoad(name, load string) *Phase {
	for i := range r.Phases {
		if r.Phases[i].Name == name && r.Phases[i].Load == load {
			return &r.Phases[i]
		}
	}
	return nil
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// WriteTable writes the human table: one row per phase, then the ratios and notes.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	b.WriteString(r.heading())
	b.WriteString("\n\n")
	writeRows(&b, r.rows())
	b.WriteString("\n")
	for _, l := range r.trailer() {
		b.WriteString(l)
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteMarkdown writes the table of WriteTable as Markdown, for docs/performance.md: the
// heading as a paragraph, the rows as a table, the ratios and notes as a list.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	esc := strings.NewReplacer("*", `\*`, "|", `\|`).Replace // the in-process marks are not emphasis
	b.WriteString(strings.ReplaceAll(esc(r.heading()), "\n", "  \n"))
	b.WriteString("\n\n")
	for i, row := range r.rows() {
		for _, c := range row {
			b.WriteString("| " + esc(c) + " ")
		}
		b.WriteString("|\n")
		if i == 0 {
			b.WriteString(strings.Repeat("| --- ", len(row)) + "|\n")
		}
	}
	b.WriteString("\n")
	for _, l := range r.trailer() {
		b.WriteString("- " + esc(l) + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// heading is the run's parameters and machine, two lines.
func (r *Report) heading() string {
	var b strings.Builder
	loop := "closed loop"
	if r.Rate > 0 {
		loop = fmt.Sprintf("open loop %.0f req/s", r.Rate)
	}
	bound := r.Duration.String()
	if r.Requests > 0 {
		bound = fmt.Sprintf("%s / %d requests", r.Duration, r.Requests)
	}
	title := "sessiongate bench"
	if r.TLS {
		title = "sessiongate bench -tls"
	}
	fmt.Fprintf(&b, "%s: %d sessions (%s), %d conns, %s, %s per phase (warm-up %s), %d members, gateway %s",
		title, r.Sessions, r.Mix, r.Conns, loop, bound, r.Warmup, r.Members, r.Mode)
	if r.Rounds > 1 {
		fmt.Fprintf(&b, ", %d interleaved rounds merged", r.Rounds)
	}
	if r.ReusePort {
		b.WriteString(", reuseport")
	}
	if r.Dataplane != "" && r.Dataplane != config.DataplaneFasthttp {
		fmt.Fprintf(&b, ", dataplane %s", r.Dataplane)
	}
	if r.H2Conns > 0 {
		fmt.Fprintf(&b, ", h2 %d conns x %d streams", r.H2Conns, r.H2Streams)
	}
	if r.Taskset != "" {
		fmt.Fprintf(&b, ", taskset %s", r.Taskset)
	}
	fmt.Fprintf(&b, "\nmachine: %s, bench process on %d CPUs (GOMAXPROCS %d), %s %s/%s", r.Machine.CPU, r.Machine.NumCPU, r.Machine.GOMAXPROCS, r.Machine.GoVersion, r.Machine.OS, r.Machine.Arch)
	return b.String()
}

// rows are the table's header and one row per phase; the TLS bench adds its load, the
// handshakes and the CPU cores.
func (r *Report) rows() [][]string {
	rows := [][]string{{"path", "req/s", "p50", "p90", "p99", "p99.9", "max", "errors", "sticky viol.", "CPU/req", "allocs/req"}}
	if r.TLS {
		rows[0] = slices.Insert(rows[0], 1, "load")
		rows[0] = slices.Insert(rows[0], 10, "handshakes", "CPU cores")
	}
	for _, p := range r.Phases {
		cpu := "-"
		if p.CPUPerRequest > 0 {
			cpu = fmtDur(p.CPUPerRequest)
			if p.CPUScope == "bench process" {
				cpu += "*"
			}
		}
		allocs := "-"
		if p.AllocsPerRequest > 0 {
			allocs = fmt.Sprintf("%.1f*", p.AllocsPerRequest)
		}
		row := []string{p.Name, fmt.Sprintf("%.0f", p.RPS), fmtDur(p.P50), fmtDur(p.P90), fmtDur(p.P99), fmtDur(p.P999), fmtDur(p.Max),
			fmt.Sprint(p.ErrorCount), fmt.Sprint(p.StickyViolations), cpu, allocs}
		if r.TLS {
			cores := "-"
			if p.CPUCores > 0 {
				cores = fmt.Sprintf("%.2f", p.CPUCores)
				if p.CPUScope == "bench process" {
					cores += "*"
				}
			}
			row = slices.Insert(row, 1, p.Load)
			row = slices.Insert(row, 10, fmt.Sprint(p.Handshakes), cores)
		}
		rows = append(rows, row)
	}
	return rows
}

// trailer is what follows the table, a line each: what the TLS columns mean, the
// ratios, the errors by kind, the notes.
func (r *Report) trailer() []string {
	var out []string
	if r.TLS {
		out = append(out,
			"handshake: every request on a new TLS 1.3 connection (full handshake, no resumption): req/s is handshakes/s, CPU/req is CPU per handshake and its request",
			"CPU cores: the proxy's CPU per second; below the cores it may use, the load generator set the rate, so compare CPU/req")
		if r.H2Conns > 0 {
			out = append(out, fmt.Sprintf("h2: HTTP/2 (ALPN h2) on %d kept TLS 1.3 connections, %d concurrent streams each, on the proxy restarted with HTTP/2 on; CPU/req is per request (stream)", r.H2Conns, r.H2Streams))
		}
	}
	for _, p := range r.Phases {
		if p.VsBestPeer == nil {
			continue
		}
		what, met := "req/s", "met"
		if p.Load == LoadHandshake {
			what = "handshakes/s"
		}
		if p.VsBestPeer.RPS < p.Target {
			met = "missed"
		}
		target := ""
		if p.Target > 0 {
			target = fmt.Sprintf(" (target >= %.2f: %s)", p.Target, met)
		}
		load := ""
		if p.Load != "" {
			load = " " + p.Load
		}
		l := fmt.Sprintf("%s/%s%s (best peer): %s %.2f%s, p50 %.2fx, p99 %.2fx",
			p.Name, p.BestPeer, load, what, p.VsBestPeer.RPS, target, p.VsBestPeer.P50, p.VsBestPeer.P99)
		if p.VsBestPeer.CPU > 0 {
			l += fmt.Sprintf(", CPU/req %.2fx", p.VsBestPeer.CPU)
		}
		out = append(out, l)
	}
	for _, p := range r.Phases {
		if p.VsKeepAlive == nil {
			continue
		}
		// Latencies are left out: the loads have different numbers of requests in flight.
		l := fmt.Sprintf("%s h2/http1.1 (h2 over keep-alive, same proxy):", p.Name)
		if p.VsKeepAlive.CPU > 0 {
			l += fmt.Sprintf(" CPU/req %.2fx,", p.VsKeepAlive.CPU)
		}
		out = append(out, l+fmt.Sprintf(" req/s %.2f (%d streams in flight against %d connections)", p.VsKeepAlive.RPS, r.H2Conns*r.H2Streams, r.Conns))
	}
	for _, p := range r.Phases {
		refs := []struct {
			name string
			r    *Ratios
		}{{"direct", p.VsDirect}, {"sessiongate", p.VsFasthttpDataplane}, {"haproxy", p.VsHAProxy}}
		for _, name := range []string{"nginx", "fasthttp"} {
			if q := p.VsPeers[name]; q != nil {
				refs = append(refs, struct {
					name string
					r    *Ratios
				}{name, q})
			}
		}
		for _, ref := range refs {
			if ref.r == nil {
				continue
			}
			l := fmt.Sprintf("%s/%s: req/s %.2f, p50 %.2fx, p99 %.2fx", p.Name, ref.name, ref.r.RPS, ref.r.P50, ref.r.P99)
			if ref.r.CPU > 0 {
				l += fmt.Sprintf(", CPU/req %.2fx", ref.r.CPU)
			}
			out = append(out, l)
		}
	}
	for _, p := range r.Phases {
		if len(p.Errors) > 0 {
			keys := make([]string, 0, len(p.Errors))
			for k := range p.Errors {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			l := p.label() + " errors:"
			for _, k := range keys {
				l += fmt.Sprintf(" %s=%d", k, p.Errors[k])
			}
			out = append(out, l)
		}
	}
	for _, n := range r.Notes {
		out = append(out, "note: "+n)
	}
	return out
}

func writeRows(b *strings.Builder, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, row := range rows {
		for i, c := range row {
			if i == 0 {
				fmt.Fprintf(b, "%-*s", widths[i], c)
			} else {
				fmt.Fprintf(b, "  %*s", widths[i], c)
			}
		}
		b.WriteString("\n")
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	}
}

// Gate lists why a run fails the CI gate: errors or sticky violations in any phase but
// nginx's (open-source NGINX cannot learn sessions, so it shows violations by design),
// sticky violations of the naive fasthttp peer (it keeps no session),
// and a sessiongate/direct req/s ratio below minRatio (0: not checked), of each data
// path measured (the phases sessiongate and PhaseEpoll). Empty: pass.
func (r *Report) Gate(minRatio float64) []string {
	var out []string
	for _, p := range r.Phases {
		if p.Name == "nginx" {
			continue
		}
		if p.ErrorCount > 0 {
			out = append(out, fmt.Sprintf("%s: %d errors %v", p.label(), p.ErrorCount, p.Errors))
		}
		if p.StickyViolations > 0 && p.Name != "fasthttp" { // the naive peer keeps no session

			out = append(out, fmt.Sprintf("%s: %d sticky violations", p.label(), p.StickyViolations))
		}
		if isGateway(p.Name) && minRatio > 0 {
			switch {
			case p.VsDirect == nil:
				out = append(out, p.Name+": no ratio to direct was measured")
			case p.VsDirect.RPS < minRatio:
				out = append(out, fmt.Sprintf("%s/direct req/s %.2f is below the floor %.2f", p.Name, p.VsDirect.RPS, minRatio))
			}
		}
	}
	return out
}
