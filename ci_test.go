package spotifyauth_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// ciFuzzStep runs the fuzz step of .ci/run with a stand-in for go that
// records its arguments and fails for the target named by $CRASH, and
// returns what it was called with.
func ciFuzzStep(t *testing.T, env ...string) (calls []string, err error) {
	t.Helper()
	script, rerr := os.ReadFile(".ci/run")
	if rerr != nil {
		t.Fatal(rerr)
	}
	m := regexp.MustCompile(`(?s)\nstep "fuzz.*?\n(step ")`).FindSubmatchIndex(script)
	if m == nil {
		t.Fatal(`.ci/run has no step "fuzz ..." followed by another step`)
	}
	step := string(script[m[0]:m[2]])
	bin := t.TempDir()
	record := filepath.Join(bin, "calls")
	fakeGo := "#!/usr/bin/env bash\necho \"$*\" >> " + record + "\n" +
		"if [ -n \"${CRASH:-}\" ] && [[ \"$*\" == *\"$CRASH\"* ]]; then exit 1; fi\n"
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", "set -euo pipefail\nstep() { :; }\n"+step)
	cmd.Env = append(withoutVars(os.Environ(), "FUZZTIME=", "CRASH=", "PATH="), "PATH="+bin+":"+os.Getenv("PATH"))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	data, _ := os.ReadFile(record)
	calls = strings.Split(strings.TrimSpace(string(data)), "\n")
	t.Logf("fuzz step output:\n%s", out)
	return calls, err
}

func withoutVars(env []string, prefixes ...string) []string {
	var out []string
	for _, e := range env {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(e, p) }) {
			out = append(out, e)
		}
	}
	return out
}

// TestCIFuzzStepIsBudgetedByIterations: a loaded machine must fuzz less
// slowly, not fail. A -fuzztime in seconds makes Go 1.26's coordinator
// race its own deadline when workers are starved ("context deadline
// exceeded", go.dev/issue/75804); a count of iterations sets no deadline.
// FUZZTIME still overrides the budget, and a crasher still fails the run.
func TestCIFuzzStepIsBudgetedByIterations(t *testing.T) {
	budget := regexp.MustCompile(`-fuzztime (\S+)`)
	calls, err := ciFuzzStep(t)
	if err != nil {
		t.Fatalf("the fuzz step failed: %v", err)
	}
	if len(calls) < 5 {
		t.Fatalf("the fuzz step ran %d targets: %q", len(calls), calls)
	}
	for _, c := range calls {
		m := budget.FindStringSubmatch(c)
		if m == nil || !regexp.MustCompile(`^[1-9][0-9]*x$`).MatchString(m[1]) {
			t.Errorf("go %s: want -fuzztime <iterations>x", c)
		}
	}

	calls, err = ciFuzzStep(t, "FUZZTIME=3s")
	if err != nil {
		t.Fatalf("the fuzz step with FUZZTIME failed: %v", err)
	}
	for _, c := range calls {
		if m := budget.FindStringSubmatch(c); m == nil || m[1] != "3s" {
			t.Errorf("go %s: FUZZTIME=3s not honoured", c)
		}
	}

	if _, err := ciFuzzStep(t, "CRASH=FuzzSafeReturnPath"); err == nil {
		t.Error("a target that fails (a crasher) did not fail the fuzz step")
	}
}
