package docker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onnx-cria/onnx-cria/onnxio"
)

// instruction is one logical line of a Dockerfile: continuations joined,
// comments dropped, whitespace collapsed.
type instruction struct {
	Cmd  string // upper case: FROM, COPY, ...
	Args string
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		f := strings.Fields(cur.String())
		cur.Reset()
		if len(f) == 0 {
			continue
		}
		out = append(out, instruction{strings.ToUpper(f[0]), strings.Join(f[1:], " ")})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// finalStage returns the instructions after the last FROM.
func finalStage(ins []instruction) []instruction {
	last := -1
	for i, in := range ins {
		if in.Cmd == "FROM" {
			last = i
		}
	}
	return ins[last+1:]
}

// copyDest is the destination of a COPY instruction.
func copyDest(args string) string {
	f := strings.Fields(args)
	return f[len(f)-1]
}

// TestFilesAgree checks, without building anything, that the Dockerfile's
// final stage and docker/Containerfile describe the same image, that the
// Containerfile needs no RUN, and that the user and library path agree with
// mkrootfs.sh and the COPY lines.
func TestFilesAgree(t *testing.T) {
	docker := finalStage(parseDockerfile(t, "../Dockerfile"))
	local := finalStage(parseDockerfile(t, "Containerfile"))

	allowed := []string{"ARG", "FROM", "LABEL", "COPY", "ENV", "USER", "WORKDIR", "ENTRYPOINT"}
	for _, in := range parseDockerfile(t, "Containerfile") {
		if !slices.Contains(allowed, in.Cmd) {
			t.Errorf("Containerfile: %s %s: only %v can be built without running a container", in.Cmd, in.Args, allowed)
		}
	}

	// The Dockerfile copies the base tree in first; the Containerfile has it as FROM.
	if len(docker) == 0 || docker[0].Cmd != "COPY" || docker[0].Args != "--from=rootfs /rootfs/ /" {
		t.Fatalf("Dockerfile: the final stage should start with COPY --from=rootfs /rootfs/ /, got %v", docker)
	}
	docker = docker[1:]

	pick := func(ins []instruction) (meta []string, copies []string) {
		for _, in := range ins {
			if in.Cmd == "COPY" {
				copies = append(copies, copyDest(in.Args))
			} else {
				meta = append(meta, in.Cmd+" "+in.Args)
			}
		}
		return meta, copies
	}
	dm, dc := pick(docker)
	lm, lc := pick(local)
	if !slices.Equal(dm, lm) {
		t.Errorf("final stages differ:\nDockerfile:    %q\nContainerfile: %q", dm, lm)
	}
	if !slices.Equal(dc, lc) {
		t.Errorf("COPY destinations differ:\nDockerfile:    %q\nContainerfile: %q", dc, lc)
	}

	var user, lib, entry string
	for _, in := range local {
		switch in.Cmd {
		case "USER":
			user = in.Args
		case "ENV":
			if v, ok := strings.CutPrefix(in.Args, "ONNX_CRIA_ORT_LIB="); ok {
				lib = v
			}
		case "ENTRYPOINT":
			var ep []string
			if err := json.Unmarshal([]byte(in.Args), &ep); err != nil || len(ep) == 0 {
				t.Fatalf("ENTRYPOINT %s: want the exec (JSON) form", in.Args)
			}
			entry = ep[0]
		}
	}
	if lib == "" || !slices.Contains(lc, lib) {
		t.Errorf("ENV ONNX_CRIA_ORT_LIB=%q names no copied file (copies: %q)", lib, lc)
	}
	if entry == "" || !slices.Contains(lc, entry) {
		t.Errorf("ENTRYPOINT %q is no copied file (copies: %q)", entry, lc)
	}

	script, err := os.ReadFile("mkrootfs.sh")
	if err != nil {
		t.Fatal(err)
	}
	uid := regexp.MustCompile(`(?m)^CRIA_UID=(\d+)$`).FindSubmatch(script)
	gid := regexp.MustCompile(`(?m)^CRIA_GID=(\d+)$`).FindSubmatch(script)
	if uid == nil || gid == nil {
		t.Fatal("mkrootfs.sh: no CRIA_UID= or CRIA_GID= line")
	}
	if want := string(uid[1]) + ":" + string(gid[1]); user != want {
		t.Errorf("USER %s, but mkrootfs.sh makes the user %s", user, want)
	}
	if user == "0" || strings.HasPrefix(user, "0:") || strings.HasPrefix(user, "root") {
		t.Errorf("USER %s: the image must not run as root", user)
	}
}

// imageConfig is the part of `podman image inspect` that the test checks.
type imageConfig struct {
	Size   int64
	Config struct {
		User       string
		Env        []string
		Entrypoint []string
		WorkingDir string
	}
}

// run runs a command in the repository root and returns its standard output;
// when it fails, the test fails with all its output.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s (%.0fs)", name, strings.Join(args, " "), time.Since(start).Seconds())
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// fixture returns a bundled model and its calibration data, relative to the
// repository root: the CNN where it exists, else the Llama-style LM.
func fixture() (model, calib string, ok bool) {
	for _, f := range [][2]string{
		{"testdata/models/cnn/model.onnx", "testdata/data/fmnist_calib.npz"},
		{"testdata/models/llama/model.onnx", "testdata/data/llama_calib.npz"},
	} {
		_, e1 := os.Stat(filepath.Join("..", f[0]))
		_, e2 := os.Stat(filepath.Join("..", f[1]))
		if e1 == nil && e2 == nil {
			return f[0], f[1], true
		}
	}
	return "", "", false
}

var paramsRe = regexp.MustCompile(`(?m)^parameters:\s+([\d,]+)`)

func params(t *testing.T, inspect string) int {
	t.Helper()
	m := paramsRe.FindStringSubmatch(inspect)
	if m == nil {
		t.Fatalf("no parameters line in inspect output:\n%s", inspect)
	}
	n, err := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestImage builds the image with podman from a local base (docker/build.sh),
// exports its filesystem (docker/export.sh), and, as the image's user, with
// its environment, working directory and entrypoint, shrinks a bundled
// fixture inside it under chroot; the output must pass `inspect` in the image
// (validation: ok, fewer parameters), load and run in ONNX Runtime in the
// image (eval), and pass onnxio.Validate on the host.
func TestImage(t *testing.T) {
	if os.Getenv("ONNX_CRIA_DOCKER_TEST") != "1" {
		t.Skip("set ONNX_CRIA_DOCKER_TEST=1 (or run make image-test) to build the image with podman and shrink a fixture in it; needs root, podman, apt-get and a few minutes")
	}
	if testing.Short() {
		t.Skip("-short: the image test builds an image")
	}
	if os.Geteuid() != 0 {
		t.Skip("the image test needs root (to lay out the base tree with its owners and to chroot)")
	}
	var missing []string
	for _, tool := range []string{"podman", "apt-get", "apt-cache", "dpkg-deb", "tar", "go", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		t.Skipf("the image test needs %s (apt-get install podman)", strings.Join(missing, ", "))
	}
	model, calib, ok := fixture()
	if !ok {
		t.Skip("no bundled fixture (testdata/models/cnn or testdata/models/llama with its calibration data)")
	}
	ort, err := exec.Command("../scripts/setup-ort.sh").Output()
	if err != nil {
		t.Skipf("no ONNX Runtime library: scripts/setup-ort.sh failed: %v", err)
	}
	ortLib := strings.TrimSpace(string(ort))

	const imageName = "onnx-cria:test"
	tmp := t.TempDir()
	start := time.Now()
	run(t, []string{"IMAGE=" + imageName, "BUILD_DIR=" + filepath.Join(tmp, "build"), "ORT_LIB=" + ortLib}, "docker/build.sh")

	// The image's configuration.
	var cfgs []imageConfig
	if err := json.Unmarshal([]byte(run(t, nil, "podman", "image", "inspect", imageName)), &cfgs); err != nil || len(cfgs) != 1 {
		t.Fatalf("podman image inspect %s: %v (%d images)", imageName, err, len(cfgs))
	}
	cfg := cfgs[0].Config
	t.Logf("image %s: %.1f MB; user %s, working directory %s, entrypoint %q, env %q",
		imageName, float64(cfgs[0].Size)/1e6, cfg.User, cfg.WorkingDir, cfg.Entrypoint, cfg.Env)
	if cfg.WorkingDir != "/work" {
		t.Errorf("WorkingDir %q, want /work", cfg.WorkingDir)
	}
	if !slices.Equal(cfg.Entrypoint, []string{"/usr/local/bin/onnx-cria"}) {
		t.Errorf("Entrypoint %q, want [/usr/local/bin/onnx-cria]", cfg.Entrypoint)
	}
	lib := ""
	for _, e := range cfg.Env {
		if v, ok := strings.CutPrefix(e, "ONNX_CRIA_ORT_LIB="); ok {
			lib = v
		}
	}
	if lib == "" {
		t.Errorf("Env %q has no ONNX_CRIA_ORT_LIB", cfg.Env)
	}
	uid, gid, err := parseUser(cfg.User)
	if err != nil {
		t.Fatalf("User %q: %v", cfg.User, err)
	}
	if uid == 0 {
		t.Fatalf("User %q runs as root", cfg.User)
	}

	// The image's filesystem.
	root := filepath.Join(tmp, "rootfs")
	run(t, nil, "docker/export.sh", imageName, root)
	for _, p := range []string{cfg.Entrypoint[0], lib, "/etc/passwd", "/work"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("exported image: %v", err)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^[^:]+:x:%d:%d:`, uid, gid)).Match(passwd) {
		t.Errorf("/etc/passwd of the image has no entry for %d:%d:\n%s", uid, gid, passwd)
	}
	if st, err := os.Stat(filepath.Join(root, "work")); err == nil {
		if s := st.Sys().(*syscall.Stat_t); s.Uid != uint32(uid) {
			t.Errorf("/work is owned by uid %d, want %d", s.Uid, uid)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "bin/sh")); err == nil {
		t.Logf("note: the image has a shell")
	}

	// As `docker run -v "$PWD":/work`: the inputs in /work, /proc mounted.
	for dst, src := range map[string]string{"work/in.onnx": model, "work/calib.npz": calib} {
		b, err := os.ReadFile(filepath.Join("..", src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o555); err != nil {
		t.Fatal(err)
	}
	in := &container{t: t, root: root, uid: uid, gid: gid, cfg: cfgs[0]}
	in.pickLauncher()

	t.Logf("shrinking %s with %s inside the image", model, calib)
	shrinkStart := time.Now()
	in.run("shrink", "/work/in.onnx", "/work/out.onnx", "--target", "0.5", "--calib", "/work/calib.npz",
		"--samples", "128", "--per-round", "0.25", "--no-latency", "--quiet", "--report", "/work/report.json")
	t.Logf("shrink took %.0fs", time.Since(shrinkStart).Seconds())

	out := filepath.Join(root, "work/out.onnx")
	st, err := os.Stat(out)
	if err != nil {
		t.Fatalf("no output model: %v", err)
	}
	if s := st.Sys().(*syscall.Stat_t); s.Uid != uint32(uid) {
		t.Errorf("out.onnx is owned by uid %d; the tool should have run as %d", s.Uid, uid)
	}
	before := in.run("inspect", "/work/in.onnx")
	after := in.run("inspect", "/work/out.onnx")
	if !strings.Contains(after, "validation: ok") {
		t.Errorf("inspect of the output in the image does not say validation: ok:\n%s", after)
	}
	pb, pa := params(t, before), params(t, after)
	t.Logf("parameters %d -> %d (reduction %.3f)", pb, pa, 1-float64(pa)/float64(pb))
	if pa >= pb {
		t.Errorf("the output has %d parameters, the input %d", pa, pb)
	}
	t.Log(strings.TrimSpace(in.run("eval", "--quiet", "/work/out.onnx", "/work/calib.npz")))

	m, err := onnxio.Load(out)
	if err != nil {
		t.Fatalf("the output does not load on the host: %v", err)
	}
	if err := onnxio.Validate(m); err != nil {
		t.Errorf("the output does not validate on the host: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "work/report.json")); err != nil || !json.Valid(b) {
		t.Errorf("report.json: missing or not JSON (%v)", err)
	}
	t.Logf("image test took %.0fs", time.Since(start).Seconds())
}

// parseUser reads a numeric USER uid[:gid].
func parseUser(s string) (uid, gid int, err error) {
	u, g, ok := strings.Cut(s, ":")
	if uid, err = strconv.Atoi(u); err != nil {
		return 0, 0, fmt.Errorf("not numeric: %v", err)
	}
	gid = uid
	if ok {
		if gid, err = strconv.Atoi(g); err != nil {
			return 0, 0, fmt.Errorf("not numeric: %v", err)
		}
	}
	return uid, gid, nil
}

// container runs the entrypoint in an exported image filesystem as `docker run`
// would: as the image's user, with only the image's environment, in its
// working directory, with /proc mounted. With util-linux unshare that is
// `unshare --root --wd --setuid --setgid --mount-proc` in fresh mount and PID
// namespaces (nothing is left mounted afterwards); where namespaces are not
// allowed it falls back to `chroot --userspec` without /proc.
type container struct {
	t        *testing.T
	root     string
	uid, gid int
	cfg      imageConfig
	launcher func(args []string) []string
}

func (im *container) pickLauncher() {
	unshare := func(args []string) []string {
		return append([]string{"unshare", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc=/proc",
			"--root=" + im.root, "--wd=" + im.cfg.Config.WorkingDir,
			"--setgid=" + strconv.Itoa(im.gid), "--setuid=" + strconv.Itoa(im.uid), "--"}, args...)
	}
	chroot := func(args []string) []string {
		return append([]string{"chroot", fmt.Sprintf("--userspec=%d:%d", im.uid, im.gid), im.root}, args...)
	}
	probe := append(slices.Clone(im.cfg.Config.Entrypoint), "version")
	_, err := im.exec(unshare(probe))
	if err == nil {
		im.launcher = unshare
		return
	}
	im.t.Logf("unshare cannot run the image (%v); using chroot --userspec without /proc", err)
	im.launcher = chroot
}

func (im *container) exec(argv []string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = im.cfg.Config.Env
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%v\n%s%s", err, stdout.String(), stderr.String())
	} else if stderr.Len() > 0 {
		im.t.Logf("%s: stderr:\n%s", strings.Join(argv, " "), stderr.String())
	}
	return stdout.String(), err
}

// run runs the image's entrypoint with args and returns its standard output.
func (im *container) run(args ...string) string {
	im.t.Helper()
	argv := im.launcher(append(slices.Clone(im.cfg.Config.Entrypoint), args...))
	out, err := im.exec(argv)
	if err != nil {
		im.t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	return out
}
