package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// buildStatic compiles the command as `make build` does (keep the two in step) into a
// temporary directory: no cgo, -trimpath, the VCS revision stamped when there is one.
func buildStatic(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sessiongate")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=auto", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build -trimpath: %v\n%s", err, out)
	}
	return bin
}

// TestStaticBinary checks that the binary of `make build` links nothing dynamically,
// so that it runs on any Linux of its architecture and alone in a FROM scratch image.
func TestStaticBinary(t *testing.T) {
	ldd, lddErr := exec.LookPath("ldd")
	file, fileErr := exec.LookPath("file")
	if lddErr != nil && fileErr != nil {
		t.Skipf("neither ldd nor file is installed: cannot inspect the binary (%v; %v)", lddErr, fileErr)
	}
	bin := buildStatic(t)
	if lddErr == nil {
		// ldd exits non-zero on a static binary; its words are the verdict. glibc says
		// "not a dynamic executable", musl "Not a valid dynamic program".
		out, _ := exec.Command(ldd, bin).CombinedOutput()
		s := strings.ToLower(string(out))
		if !strings.Contains(s, "not a dynamic executable") && !strings.Contains(s, "not a valid dynamic program") {
			t.Errorf("ldd %s = %q, want \"not a dynamic executable\"", bin, out)
		}
	} else {
		t.Logf("ldd is not installed: %v", lddErr)
	}
	if fileErr == nil {
		out, err := exec.Command(file, bin).CombinedOutput()
		if err != nil {
			t.Fatalf("file %s: %v\n%s", bin, err, out)
		}
		if !strings.Contains(string(out), "statically linked") && !strings.Contains(string(out), "static-pie linked") {
			t.Errorf("file %s = %q, want \"statically linked\"", bin, out)
		}
	} else {
		t.Logf("file is not installed: %v", fileErr)
	}
}

// gitHead is the commit of the work tree the test runs in, "" outside a git checkout or
// without git (the build then records no revision either).
func gitHead(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Logf("no git revision to compare with: %v", err)
		return ""
	}
	return strings.TrimSpace(string(out))
}

// TestVersionCommand runs `sessiongate version` and `sessiongate -version` on the
// static build: one line with the module version, the revision of this checkout and
// the Go version.
func TestVersionCommand(t *testing.T) {
	bin := buildStatic(t)
	var lines []string
	for _, args := range [][]string{{"version"}, {"-version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("sessiongate %s: %v", args[0], err)
		}
		lines = append(lines, string(out))
	}
	line := lines[0]
	if lines[1] != line {
		t.Errorf("sessiongate -version = %q, want what sessiongate version prints, %q", lines[1], line)
	}
	if !strings.HasPrefix(line, "sessiongate ") || !strings.HasSuffix(line, " "+runtime.Version()+"\n") {
		t.Errorf("sessiongate version = %q, want \"sessiongate <version> ... %s\\n\"", line, runtime.Version())
	}
	if head := gitHead(t); head != "" && !strings.Contains(line, " revision "+head) {
		t.Errorf("sessiongate version = %q, want revision %s (the checkout's HEAD)", line, head)
	}
}

// TestDockerBuild builds the image of `make docker` from a context holding what
// .dockerignore lets through, and runs its `version`. It needs a Docker engine and
// skips without one; nothing is pulled (the Dockerfile starts FROM scratch).
func TestDockerBuild(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skipf("docker is not installed: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	infoCtx, infoCancel := context.WithTimeout(ctx, 30*time.Second)
	defer infoCancel()
	if out, err := exec.CommandContext(infoCtx, docker, "info").CombinedOutput(); err != nil {
		t.Skipf("docker info: %v: no Docker engine to build with: %s", err, lastLine(out))
	}

	root := filepath.Join("..", "..")
	dir := t.TempDir()
	copyFile(t, filepath.Join(root, "Dockerfile"), filepath.Join(dir, "Dockerfile"))
	copyFile(t, filepath.Join(root, ".dockerignore"), filepath.Join(dir, ".dockerignore"))
	copyFile(t, filepath.Join(root, "examples", "fbdev.yaml"), filepath.Join(dir, "examples", "fbdev.yaml"))
	bin := buildStatic(t)
	copyFile(t, bin, filepath.Join(dir, "bin", "sessiongate"))

	image := fmt.Sprintf("sessiongate-test:%d", os.Getpid())
	if out, err := exec.CommandContext(ctx, docker, "build", "-t", image, dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	defer exec.Command(docker, "rmi", "-f", image).Run() //nolint:errcheck // best effort
	got, err := exec.CommandContext(ctx, docker, "run", "--rm", image, "version").Output()
	if err != nil {
		t.Fatalf("docker run %s version: %v", image, err)
	}
	want, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("sessiongate version: %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("docker run %s version = %q, want %q", image, got, want)
	}
}

// TestDockerfile checks, without Docker, what TestDockerBuild needs an engine for: the
// Dockerfile pulls nothing (its only stage is FROM scratch), and every file it copies
// is one that .dockerignore sends.
func TestDockerfile(t *testing.T) {
	root := filepath.Join("..", "..")
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	di, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	sent := func(path string) bool { // "*" then "!path" or "!dir/" lines, as written there
		for l := range strings.SplitSeq(string(di), "\n") {
			if p, ok := strings.CutPrefix(strings.TrimSpace(l), "!"); ok && (p == path || strings.HasSuffix(p, "/") && strings.HasPrefix(path, p)) {
				return true
			}
		}
		return false
	}
	froms, copies := 0, 0
	for l := range strings.SplitSeq(string(df), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms++
			if len(f) != 2 || f[1] != "scratch" {
				t.Errorf("Dockerfile: %q: want only FROM scratch (no image to pull)", l)
			}
		case "COPY", "ADD":
			copies++
			for _, src := range f[1 : len(f)-1] {
				if !sent(src) {
					t.Errorf("Dockerfile: %q: .dockerignore leaves %s out of the context", l, src)
				}
			}
		}
	}
	if froms != 1 || copies == 0 {
		t.Errorf("Dockerfile has %d FROM and %d COPY lines, want one FROM scratch and the copies", froms, copies)
	}
}

// copyFile copies src to dst, creating dst's directory, with src's permissions.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// lastLine is the last non-empty line of out, for a one-line skip reason.
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
