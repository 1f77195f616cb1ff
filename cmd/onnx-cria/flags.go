package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"

	"github.com/onnx-cria/onnx-cria/ort"
)

// flagSet is a command's flags, grouped for --help.
type flagSet struct {
	*flag.FlagSet
	name, synopsis, about string
	titles                []string          // group titles in order
	group                 map[string]string // flag name -> group title
	cur                   string
}

func newFlags(name, synopsis, about string, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), name: name, synopsis: synopsis,
		about: strings.TrimSpace(about), group: map[string]string{}}
	fs.SetOutput(stderr)
	fs.Usage = fs.usage
	return fs
}

// section starts a group of flags in --help; flags defined after it
// belong to it.
func (fs *flagSet) section(title string) {
	fs.titles = append(fs.titles, title)
	fs.cur = title
}

// Var defines a flag and files it under the current section.
func (fs *flagSet) Var(v flag.Value, name, usage string) {
	fs.FlagSet.Var(v, name, usage)
	fs.group[name] = fs.cur
}

func (fs *flagSet) String(name, def, usage string) *string {
	p := new(string)
	*p = def
	fs.Var((*stringValue)(p), name, usage)
	return p
}

func (fs *flagSet) Bool(name string, def bool, usage string) *bool {
	p := new(bool)
	*p = def
	fs.Var((*boolValue)(p), name, usage)
	return p
}

// Int defines an integer flag whose value must be at least lo.
func (fs *flagSet) Int(name string, def, lo int, usage string) *int {
	p := new(int)
	*p = def
	fs.Var(&intValue{p: p, lo: lo}, name, usage)
	return p
}

func (fs *flagSet) Int64(name string, def int64, usage string) *int64 {
	p := new(int64)
	*p = def
	fs.Var((*int64Value)(p), name, usage)
	return p
}

// Float defines a float flag that must lie in the given range: lo and hi
// bound it, open at an end when loOpen or hiOpen. NaN never passes.
func (fs *flagSet) Float(name string, def float64, r span, usage string) *float64 {
	p := new(float64)
	*p = def
	fs.Var(&floatValue{p: p, r: r}, name, usage)
	return p
}

// span is the range of a float flag.
type span struct {
	lo, hi         float64
	loOpen, hiOpen bool
}

var (
	fraction01   = span{0, 1, true, true}            // (0, 1)
	fraction01c  = span{0, 1, true, false}           // (0, 1]
	unitInterval = span{0, 1, false, false}          // [0, 1]
	nonNegative  = span{0, math.Inf(1), false, true} // [0, inf)
	positive     = span{0, math.Inf(1), true, true}  // (0, inf)
)

func (r span) contains(v float64) bool {
	switch {
	case math.IsNaN(v), math.IsInf(v, 0) && !math.IsInf(r.hi, 1):
		return false
	case math.IsInf(v, 1):
		return false
	case v < r.lo || (r.loOpen && v == r.lo):
		return false
	case v > r.hi || (r.hiOpen && v == r.hi):
		return false
	}
	return true
}

func (r span) String() string {
	l, h := "[", "]"
	if r.loOpen {
		l = "("
	}
	if r.hiOpen {
		h = ")"
	}
	hi := strconv.FormatFloat(r.hi, 'g', -1, 64)
	if math.IsInf(r.hi, 1) {
		hi = "inf"
	}
	return fmt.Sprintf("%s%g, %s%s", l, r.lo, hi, h)
}

type floatValue struct {
	p *float64
	r span
}

func (f *floatValue) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.FormatFloat(*f.p, 'g', -1, 64)
}

func (f *floatValue) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return errors.New("not a number")
	}
	if !f.r.contains(v) {
		return fmt.Errorf("want a number in %s", f.r)
	}
	*f.p = v
	return nil
}

type intValue struct {
	p  *int
	lo int
}

func (f *intValue) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.Itoa(*f.p)
}

func (f *intValue) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	if v < f.lo {
		return fmt.Errorf("want an integer of at least %d", f.lo)
	}
	*f.p = v
	return nil
}

type int64Value int64

func (f *int64Value) String() string { return strconv.FormatInt(int64(*f), 10) }
func (f *int64Value) Set(s string) error {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errors.New("not an integer")
	}
	*f = int64Value(v)
	return nil
}

// sizeValue is a byte count: a number with an optional unit, K, M, G or T
// (powers of 1024, with or without "iB" or "B"), e.g. 6G, 6GiB, 6144M.
type sizeValue int64

func (f *sizeValue) String() string {
	if *f == 0 {
		return "0"
	}
	return fmt.Sprintf("%.4gGiB", float64(*f)/(1<<30))
}

func (f *sizeValue) Set(s string) error {
	num := strings.TrimRight(strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I"), " ")
	mult := 1.0
	if k := strings.IndexAny(num, "KMGT"); k >= 0 && k == len(num)-1 {
		mult = map[byte]float64{'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}[num[k]]
		num = strings.TrimSpace(num[:k])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || v < 0 || v*mult > math.MaxInt64/2 {
		return errors.New("want a size such as 6G, 6GiB or 6144M")
	}
	*f = sizeValue(v * mult)
	return nil
}

type stringValue string

func (f *stringValue) String() string     { return string(*f) }
func (f *stringValue) Set(s string) error { *f = stringValue(s); return nil }

type boolValue bool

func (f *boolValue) String() string { return strconv.FormatBool(bool(*f)) }
func (f *boolValue) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	*f = boolValue(v)
	return nil
}
func (f *boolValue) IsBoolFlag() bool { return true }

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// usage prints the synopsis, the description and the flags by section.
func (fs *flagSet) usage() {
	w := fs.Output()
	fmt.Fprintf(w, "usage: onnx-cria %s %s\n\n%s\n", fs.name, fs.synopsis, fs.about)
	titles := append([]string{""}, fs.titles...)
	for _, title := range titles {
		var lines []string
		fs.VisitAll(func(f *flag.Flag) {
			if fs.group[f.Name] == title {
				lines = append(lines, flagHelp(f))
			}
		})
		if len(lines) == 0 {
			continue
		}
		if title == "" {
			title = "Flags"
		}
		fmt.Fprintf(w, "\n%s:\n%s", title, strings.Join(lines, ""))
	}
}

// flagHelp formats one flag as the flag package's PrintDefaults does.
func flagHelp(f *flag.Flag) string {
	name, usage := flag.UnquoteUsage(f)
	if name == "value" {
		switch f.Value.(type) {
		case *floatValue:
			name = "x"
		case *intValue, *int64Value, *threadsValue:
			name = "n"
		case *stringValue:
			name = "string"
		case *multiFlag:
			name = "pattern"
		}
	}
	s := "  --" + f.Name
	if name != "" {
		s += " " + name
	}
	s += "\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t")
	if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "[]" {
		if _, ok := f.Value.(*stringValue); ok {
			d = strconv.Quote(d)
		}
		s += fmt.Sprintf(" (default %s)", d)
	}
	return s + "\n"
}

// common are the flags of every command that runs models.
type common struct {
	rt    ort.Config
	batch *int
	quiet *bool
	json  *bool
}

// addCommon adds --ort-lib, --threads, --provider, --batch, --quiet and
// --json under the section "ONNX Runtime and output".
func addCommon(fs *flagSet) *common {
	c := &common{}
	fs.section("ONNX Runtime and output")
	addORT(fs, &c.rt)
	c.batch = fs.Int("batch", 64, 1, "rows per ONNX Runtime run")
	c.quiet = fs.Bool("quiet", false, "no progress on stderr")
	c.json = fs.Bool("json", false, "print JSON on stdout")
	return c
}

// addORT adds --ort-lib, --threads and --provider.
func addORT(fs *flagSet, rt *ort.Config) {
	fs.Var((*stringValue)(&rt.LibraryPath), "ort-lib", "path to libonnxruntime.so (default: $"+ort.EnvLibrary+", then the cache, then system paths)")
	fs.Var(&threadsValue{&rt.Threads}, "threads", "intra-op threads for ONNX Runtime (0: its default)")
	rt.Provider = ort.ProviderCPU
	fs.Var((*stringValue)(&rt.Provider), "provider", "execution provider: cpu or cuda")
	// The command owns its process: ORT's freed buffers go back to the
	// system between sessions (see ort.Config).
	rt.ReleaseMemory = true
}

// threadsValue refuses thread counts beyond the machine: ORT allocates
// per-thread buffers, and 100000 threads ran for minutes in gigabytes.
type threadsValue struct{ p *int }

func (t *threadsValue) String() string {
	if t.p == nil {
		return "0"
	}
	return strconv.Itoa(*t.p)
}

func (t *threadsValue) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	if n := runtime.NumCPU(); v < 0 || v > n {
		return fmt.Errorf("want 0 (ONNX Runtime's default) to %d, the CPUs this process may use", n)
	}
	*t.p = v
	return nil
}

// start initialises ONNX Runtime once per process.
func (c *common) start() error {
	if c.rt.Provider != ort.ProviderCPU && c.rt.Provider != ort.ProviderCUDA {
		return usagef("--provider %q: want cpu or cuda", c.rt.Provider)
	}
	return ort.Init(c.rt)
}
