// Command loadgen is the closed-loop HTTP/1.1 load generator of
// bench/run.sh. For each target it opens -c keep-alive connections on
// loopback, each sending one GET after another for a fixed duration, and
// records every request's latency (write of the request to the last byte
// of the response). It runs one warm-up per target, then -rounds rounds of
// all targets in turn (A, B, C, A, B, C, ...), and prints one table: the
// median over rounds of requests/s, p50 and p99, and the requested ratios
// (judged by the median of the ratios within each round).
//
// It speaks just enough HTTP/1.1 for this (Content-Length and chunked
// bodies, Connection: close), so that it costs the machine less than
// net/http's client would; any response other than 200 with the expected
// body counts as an error.
//
//	loadgen -c 32 -d 10s -rounds 3 \
//		-t floor=http://127.0.0.1:18081/ \
//		-t spotify_auth=http://127.0.0.1:18082/ -H 'spotify_auth=Cookie: @cookie.txt' \
//		-ratio 'spotify_auth/floor>=0.9'
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

type target struct {
	name    string
	addr    string // host:port to dial
	request []byte
	pid     int // the server process whose CPU time is measured (-pid, else -server-pid)
}

type result struct {
	requests int
	errors   int
	firstErr error
	elapsed  time.Duration
	lat      []time.Duration // sorted
	cpu      time.Duration   // CPU time of -server-pid during the run
	selfCPU  time.Duration   // CPU time of this process during the run
	busyCPU  time.Duration   // CPU time of the whole machine during the run
}

// otherCPU is how much of the machine's CPUs processes other than the
// server and the load generator used during the run, as a fraction of
// one CPU: contention that makes the run less trustworthy. Only known
// with -server-pid.
func (r result) otherCPU() float64 {
	return max(0, (r.busyCPU-r.cpu-r.selfCPU).Seconds()/r.elapsed.Seconds())
}

func (r result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r result) quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(q * float64(len(r.lat)))
	return r.lat[min(i, len(r.lat)-1)]
}

type ratio struct {
	num, den string
	min      float64
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	var targetFlags, headerFlags, ratioFlags multiFlag
	flag.Var(&targetFlags, "t", "target NAME=URL (repeatable; run in this order)")
	flag.Var(&headerFlags, "H", "extra request header NAME=Header: value for target NAME (repeatable;\n"+
		"a value @FILE is read from FILE)")
	flag.Var(&ratioFlags, "ratio", "report req/s ratio NUM/DEN>=MIN (repeatable)")
	var pidFlags multiFlag
	flag.Var(&pidFlags, "pid", "NAME=PID: the server process of target NAME, if not -server-pid's\n"+
		"(to compare two builds of the server, round by round, in one run)")
	conc := flag.Int("c", 32, "concurrent connections per target")
	dur := flag.Duration("d", 10*time.Second, "duration of each measured run")
	warm := flag.Duration("warmup", 3*time.Second, "duration of the warm-up run of each target (0: none)")
	rounds := flag.Int("rounds", 5, "measured rounds (each runs every target once)")
	pause := flag.Duration("pause", 500*time.Millisecond, "idle time between runs")
	expect := flag.String("expect-body", "ok", "body every response must have")
	pid := flag.Int("server-pid", 0, "if set, report the CPU time this process used per request")
	together := flag.Bool("together", false, "run a round's targets at the same time, not in turn: with each target\n"+
		"served by a process of its own (-pid) on one shared CPU, a slow phase of the machine\n"+
		"hits them all alike (\"others\" then counts the other targets' servers)")
	flag.Parse()
	if *conc < 1 || *rounds < 1 || *dur <= 0 {
		fatalf("loadgen: -c and -rounds must be at least 1, -d positive")
	}

	var targets []*target
	byName := map[string]*target{}
	for _, tf := range targetFlags {
		name, raw, ok := strings.Cut(tf, "=")
		u, err := url.Parse(raw)
		if !ok || err != nil || u.Scheme != "http" || u.Host == "" {
			fatalf("loadgen: bad -t %q: want NAME=http://host:port/path", tf)
		}
		if byName[name] != nil {
			fatalf("loadgen: target %q given twice", name)
		}
		t := &target{name: name, addr: u.Host}
		if u.Port() == "" {
			t.addr = net.JoinHostPort(u.Hostname(), "80")
		}
		targets = append(targets, t)
		byName[name] = t
	}
	for _, pf := range pidFlags {
		name, raw, _ := strings.Cut(pf, "=")
		n, err := strconv.Atoi(raw)
		if byName[name] == nil || err != nil || n <= 0 {
			fatalf("loadgen: bad -pid %q: want NAME=PID of a target", pf)
		}
		byName[name].pid = n
	}
	for _, t := range targets {
		if t.pid == 0 {
			t.pid = *pid
		}
	}
	measured := *pid > 0 || len(pidFlags) > 0
	if len(targets) == 0 {
		fatalf("loadgen: no targets (-t NAME=URL)")
	}
	extra := map[string][]string{}
	for _, hf := range headerFlags {
		name, h, ok := strings.Cut(hf, "=")
		if !ok || byName[name] == nil || !strings.Contains(h, ":") || strings.ContainsAny(h, "\r\n") {
			fatalf("loadgen: bad -H %.60q: want NAME=Header: value for a known target", hf)
		}
		if k, v, _ := strings.Cut(h, ":"); strings.HasPrefix(strings.TrimSpace(v), "@") {
			b, err := os.ReadFile(strings.TrimPrefix(strings.TrimSpace(v), "@"))
			if err != nil {
				fatalf("loadgen: -H %s: %v", name, err)
			}
			h = k + ": " + strings.TrimSpace(string(b))
			if strings.ContainsAny(h, "\r\n") {
				fatalf("loadgen: -H %s: %s holds more than one line", name, v)
			}
		}
		extra[name] = append(extra[name], h)
	}
	for i, tf := range targetFlags {
		_, raw, _ := strings.Cut(tf, "=")
		u, _ := url.Parse(raw)
		var b strings.Builder
		fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: bench-loadgen\r\nAccept: */*\r\n", u.RequestURI(), u.Host)
		for _, h := range extra[targets[i].name] {
			b.WriteString(h + "\r\n")
		}
		b.WriteString("\r\n")
		targets[i].request = []byte(b.String())
	}
	var ratios []ratio
	for _, rf := range ratioFlags {
		frac, minS, ok1 := strings.Cut(rf, ">=")
		num, den, ok2 := strings.Cut(frac, "/")
		m, err := strconv.ParseFloat(minS, 64)
		if !ok1 || !ok2 || err != nil || byName[num] == nil || byName[den] == nil {
			fatalf("loadgen: bad -ratio %q: want NUM/DEN>=MIN with known targets", rf)
		}
		ratios = append(ratios, ratio{num, den, m})
	}

	// Every target must answer 200 with the expected body before any
	// measurement: a 302 to a login page would be cheap and wrong.
	for _, t := range targets {
		r := run(t, 1, 0, []byte(*expect), 0)
		if r.errors > 0 || r.requests != 1 {
			fatalf("loadgen: target %s does not answer 200 %q: %v", t.name, *expect, r.firstErr)
		}
	}

	if *warm > 0 {
		for _, t := range targets {
			r := run(t, *conc, *warm, []byte(*expect), t.pid)
			fmt.Printf("warm-up  %-14s %9.0f req/s  p50 %-9s p99 %-9s errors %d\n",
				t.name, r.rps(), fmtDur(r.quantile(0.5)), fmtDur(r.quantile(0.99)), r.errors)
			time.Sleep(*pause)
		}
	}
	all := map[string][]result{}
	for round := 1; round <= *rounds; round++ {
		var at []result
		if *together {
			at = make([]result, len(targets))
			var wg sync.WaitGroup
			for i, t := range targets {
				wg.Go(func() { at[i] = run(t, *conc, *dur, []byte(*expect), t.pid) })
			}
			wg.Wait()
		}
		for i, t := range targets {
			var r result
			if *together {
				r = at[i]
			} else {
				r = run(t, *conc, *dur, []byte(*expect), t.pid)
			}
			all[t.name] = append(all[t.name], r)
			cpu := ""
			if measured {
				cpu = fmt.Sprintf("  server CPU %3.0f%% (%.1f µs/req)  others %3.0f%%", 100*r.cpu.Seconds()/r.elapsed.Seconds(), cpuPerReq(r), 100*r.otherCPU())
			}
			fmt.Printf("round %d  %-14s %9.0f req/s  p50 %-9s p99 %-9s errors %d%s  loadgen CPU %3.0f%%\n",
				round, t.name, r.rps(), fmtDur(r.quantile(0.5)), fmtDur(r.quantile(0.99)), r.errors, cpu,
				100*r.selfCPU.Seconds()/r.elapsed.Seconds())
			if r.errors > 0 {
				fmt.Printf("         first error: %v\n", r.firstErr)
			}
			if !*together {
				time.Sleep(*pause)
			}
		}
		if *together {
			time.Sleep(*pause)
		}
	}

	// The table: medians over rounds.
	fmt.Printf("\nconcurrency %d, %d rounds of %s per target (after a %s warm-up each), medians over rounds\n\n",
		*conc, *rounds, *dur, *warm)
	perW := max(len("req/s per round"), 6**rounds-1)
	hdr := fmt.Sprintf("| %-14s | %10s | %9s | %9s | %-*s | %6s |", "target", "req/s", "p50", "p99", perW, "req/s per round", "errors")
	sep := "|" + strings.Repeat("-", 16) + "|" + strings.Repeat("-", 11) + ":|" + strings.Repeat("-", 10) + ":|" +
		strings.Repeat("-", 10) + ":|" + strings.Repeat("-", perW+2) + "|" + strings.Repeat("-", 7) + ":|"
	if measured {
		hdr += fmt.Sprintf(" %14s | %11s |", "server µs/req", "other CPU")
		sep += strings.Repeat("-", 15) + ":|" + strings.Repeat("-", 12) + ":|"
	}
	fmt.Println(hdr)
	fmt.Println(sep)
	med := map[string]float64{}
	maxOther := 0.0
	for _, t := range targets {
		rs := all[t.name]
		var rps, p50, p99, cpu, other []float64
		var per []string
		errs := 0
		for _, r := range rs {
			rps = append(rps, r.rps())
			p50 = append(p50, float64(r.quantile(0.5)))
			p99 = append(p99, float64(r.quantile(0.99)))
			cpu = append(cpu, cpuPerReq(r))
			other = append(other, r.otherCPU())
			maxOther = max(maxOther, r.otherCPU())
			per = append(per, fmt.Sprintf("%.0f", r.rps()))
			errs += r.errors
		}
		med[t.name] = median(rps)
		line := fmt.Sprintf("| %-14s | %10.0f | %9s | %9s | %-*s | %6d |", t.name, med[t.name],
			fmtDur(time.Duration(median(p50))), fmtDur(time.Duration(median(p99))), perW, strings.Join(per, " "), errs)
		if measured {
			line += fmt.Sprintf(" %14.1f | %10.0f%% |", median(cpu), 100*median(other))
		}
		fmt.Println(line)
	}
	if measured {
		fmt.Println("\nserver µs/req: CPU time of the server process per request (user+system).")
		fmt.Println("other CPU: CPU used by processes other than the server and this load generator, in % of one CPU.")
		if maxOther > 0.1 {
			fmt.Printf("WARNING: other processes used up to %.0f%% of a CPU during a run: the numbers are disturbed.\n", 100*maxOther)
		}
	}
	if len(ratios) > 0 {
		fmt.Println()
	}
	for _, q := range ratios {
		// The verdict goes by the median of the ratios within each round:
		// runs next to each other in time share the machine's slow and
		// fast phases, which a ratio of medians taken from different
		// rounds does not cancel.
		var per []string
		var perV []float64
		for i, r := range all[q.num] {
			perV = append(perV, r.rps()/all[q.den][i].rps())
			per = append(per, fmt.Sprintf("%.2f", perV[i]))
		}
		v := median(perV)
		verdict := "MET"
		if v < q.min {
			verdict = "NOT MET"
		}
		fmt.Printf("%s / %s = %.2f   target >= %.2f: %s   (median of the ratios within each round: %s; ratio of the median req/s: %.2f)\n",
			q.num, q.den, v, q.min, verdict, strings.Join(per, " "), med[q.num]/med[q.den])
	}
}

func cpuPerReq(r result) float64 {
	if r.requests == 0 {
		return 0
	}
	return float64(r.cpu.Microseconds()) / float64(r.requests)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	}
}

// run drives t with conc connections for d (d == 0: one request on one
// connection) and returns what it saw.
func run(t *target, conc int, d time.Duration, expect []byte, pid int) result {
	conns := make([]*client, conc)
	for i := range conns {
		c, err := dial(t, expect)
		if err != nil {
			fatalf("loadgen: %s: %v", t.name, err)
		}
		conns[i] = c
	}
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	type workerResult struct {
		lat      []time.Duration
		errors   int
		firstErr error
	}
	out := make([]workerResult, conc)
	cpu0, self0, busy0 := cpuTime(pid), cpuTime(os.Getpid()), machineBusy()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			wr := &out[i]
			wr.lat = make([]time.Duration, 0, 1<<14)
			for {
				t0 := time.Now()
				err := c.do()
				t1 := time.Now()
				if err != nil {
					wr.errors++
					if wr.firstErr == nil {
						wr.firstErr = err
					}
					if errors.Is(err, errProtocol) || c.conn == nil {
						if c.redial() != nil {
							return
						}
					}
				} else {
					wr.lat = append(wr.lat, t1.Sub(t0))
				}
				if !t1.Before(deadline) {
					return
				}
			}
		})
	}
	wg.Wait()
	res := result{elapsed: time.Since(start), cpu: cpuTime(pid) - cpu0, selfCPU: cpuTime(os.Getpid()) - self0, busyCPU: machineBusy() - busy0}
	n := 0
	for _, wr := range out {
		n += len(wr.lat)
	}
	res.lat = make([]time.Duration, 0, n)
	for _, wr := range out {
		res.lat = append(res.lat, wr.lat...)
		res.errors += wr.errors
		if res.firstErr == nil {
			res.firstErr = wr.firstErr
		}
	}
	res.requests = n
	slices.Sort(res.lat)
	return res
}

// machineBusy is the CPU time all CPUs of the machine spent not idle
// since boot, from /proc/stat.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 7 { // idle, iowait; steal, guest (counted in user)
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / userHZ
}

// userHZ is Linux's USER_HZ, the unit of /proc CPU times, fixed at 100
// for userspace.
const userHZ = 100

// cpuTime is the user+system CPU time of process pid so far (0 if pid is 0).
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
	st, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
	return time.Duration(ut+st) * time.Second / userHZ
}

var errProtocol = errors.New("protocol error")

// client is one keep-alive connection.
type client struct {
	t      *target
	expect []byte
	conn   net.Conn
	br     *bufio.Reader
	buf    []byte // holds a body as long as expect, to compare
}

func dial(t *target, expect []byte) (*client, error) {
	c := &client{t: t, expect: expect, buf: make([]byte, len(expect))}
	return c, c.redial()
}

func (c *client) redial() error {
	c.close()
	conn, err := net.DialTimeout("tcp", c.t.addr, 5*time.Second)
	if err != nil {
		return err
	}
	c.conn = conn
	c.br = bufio.NewReaderSize(conn, 16<<10)
	return nil
}

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// do sends the request and reads the whole response. A non-200 status or
// an unexpected body is an error that keeps the connection; anything that
// leaves the stream in an unknown state wraps errProtocol.
func (c *client) do() error {
	if _, err := c.conn.Write(c.t.request); err != nil {
		return fmt.Errorf("%w: write: %v", errProtocol, err)
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("%w: status line: %v", errProtocol, err)
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return fmt.Errorf("%w: bad status line %q", errProtocol, line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return fmt.Errorf("%w: bad status line %q", errProtocol, line)
	}
	contentLength, chunked, closeConn := -1, false, bytes.HasPrefix(line, []byte("HTTP/1.0"))
	location := ""
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("%w: header: %v", errProtocol, err)
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return fmt.Errorf("%w: bad header %q", errProtocol, h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			contentLength, err = strconv.Atoi(string(value))
			if err != nil || contentLength < 0 {
				return fmt.Errorf("%w: bad Content-Length %q", errProtocol, value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			closeConn = closeConn || bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("Location")):
			location = string(value)
		}
	}
	var body []byte
	switch {
	case chunked:
		body, err = c.readChunked()
	case contentLength >= 0:
		if contentLength <= len(c.expect) {
			body = c.buf[:contentLength]
			_, err = io.ReadFull(c.br, body)
		} else {
			_, err = c.br.Discard(contentLength)
			body = nil // longer than expected: a mismatch
		}
	default:
		closeConn = true
		_, err = io.Copy(io.Discard, c.br)
	}
	if err != nil {
		return fmt.Errorf("%w: body: %v", errProtocol, err)
	}
	if closeConn {
		c.close()
		if err := c.redial(); err != nil {
			return err
		}
	}
	if status != 200 {
		if location != "" {
			return fmt.Errorf("status %d (Location: %.80s)", status, location)
		}
		return fmt.Errorf("status %d", status)
	}
	if !bytes.Equal(body, c.expect) {
		return fmt.Errorf("unexpected body %.80q", body)
	}
	return nil
}

// readChunked reads a chunked body; a body longer than expect comes back
// as nil, a mismatch.
func (c *client) readChunked() ([]byte, error) {
	body := c.buf[:0]
	tooLong := false
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		sizeHex, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		size, err := strconv.ParseInt(string(bytes.TrimSpace(sizeHex)), 16, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			for { // trailers, then the empty line
				l, err := c.br.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(bytes.TrimRight(l, "\r\n")) == 0 {
					if tooLong {
						return nil, nil
					}
					return body, nil
				}
			}
		}
		if !tooLong && len(body)+int(size) <= len(c.expect) {
			n := len(body)
			body = body[:n+int(size)]
			if _, err := io.ReadFull(c.br, body[n:]); err != nil {
				return nil, err
			}
		} else {
			tooLong = true
			if _, err := c.br.Discard(int(size)); err != nil {
				return nil, err
			}
		}
		if _, err := c.br.Discard(2); err != nil { // CRLF after the chunk
			return nil, err
		}
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
