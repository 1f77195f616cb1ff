// Command latency measures the ONNX Runtime latency of several ONNX files
// the way `onnx-cria shrink` reports it (shrink.MeasureLatency: real rows,
// two warm-up runs, the median of at least five runs over about a second),
// so that models pruned by onnx-cria and by other tools are timed by one
// code path. The files are measured in turn, --passes times round robin,
// and each file's figure is the median of its passes, which evens out
// load from other processes on a shared machine.
//
//	go run ./torchpruning/latency --data ../testdata/data/fmnist_calib.npz a.onnx b.onnx
//
// It prints JSON: one record per file with the median latency in
// milliseconds at each batch size.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/shrink"
)

// Record is one file's latency.
type Record struct {
	File    string             `json:"file"`
	Median  map[string]float64 `json:"median_ms"` // by batch size, median over passes
	Passes  [][]shrink.Latency `json:"passes"`
	Threads int                `json:"threads"`
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
}

func run(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("latency", flag.ContinueOnError)
	data := fs.String("data", "", "input rows (.npz named after the model inputs)")
	threads := fs.Int("threads", 1, "ONNX Runtime intra-op threads (0: its default)")
	passes := fs.Int("passes", 3, "round-robin passes over the files")
	batches := fs.String("batches", "1,64", "batch sizes")
	budget := fs.Duration("budget", time.Second, "time per file, batch size and pass")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" || fs.NArg() == 0 || *passes < 1 {
		return fmt.Errorf("usage: latency --data DATA.npz [--threads N] [--passes N] MODEL.onnx...")
	}
	var sizes []int
	for _, s := range strings.Split(*batches, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("--batches %q: want positive integers", *batches)
		}
		sizes = append(sizes, n)
	}
	set, err := dataset.Load(*data)
	if err != nil {
		return err
	}
	models := make([]*onnxio.Model, fs.NArg())
	for i, f := range fs.Args() {
		if models[i], err = onnxio.Load(f); err != nil {
			return err
		}
	}
	rt := ort.Config{Threads: *threads}
	recs := make([]Record, len(models))
	for p := 0; p < *passes; p++ {
		for i, m := range models {
			lat, err := shrink.MeasureLatency(m, set, sizes, *budget, rt)
			if err != nil {
				return fmt.Errorf("%s: %w", fs.Arg(i), err)
			}
			recs[i].Passes = append(recs[i].Passes, lat)
		}
	}
	for i := range recs {
		recs[i].File, recs[i].Threads = fs.Arg(i), *threads
		recs[i].Median = map[string]float64{}
		for k, size := range sizes {
			var v []float64
			for _, lat := range recs[i].Passes {
				v = append(v, lat[k].Median)
			}
			sort.Float64s(v)
			recs[i].Median[strconv.Itoa(size)] = v[len(v)/2]
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(recs)
}
