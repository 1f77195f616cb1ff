package finetune

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/autodiff"
	"github.com/onnx-cria/onnx-cria/ort"
)

// BenchmarkTrainStepProfile runs the CNN's training step under ORT's
// profiler and logs, from each node's fastest run (the first run, which
// includes ORT's warm-up, left out), the time of each op type and of the
// slowest nodes:
//
//	go test ./finetune -run '^$' -bench TrainStepProfile -benchtime 50x -v
func BenchmarkTrainStepProfile(b *testing.B) {
	needORT(b)
	m, data := loadFixture(b, "cnn", "fmnist_calib.npz")
	tg, err := autodiff.BuildTraining(m, autodiff.TrainSpec{Objective: autodiff.Objective{CE: 1}, BatchNorm: autodiff.BNBatch})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if d := os.Getenv("KEEP"); d != "" {
		dir = d
	}
	st, err := autodiff.NewStepper(tg, ort.Config{Threads: 1, Profile: filepath.Join(dir, "step")})
	if err != nil {
		b.Fatal(err)
	}
	st.Reuse = true // as finetune.Run steps
	batch, params := firstBatch(b, m, data, tg)
	if _, err := st.Run(params, batch); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := st.Run(params, batch); err != nil {
			b.Fatal(err)
		}
	}
	st.Destroy()
	files, _ := filepath.Glob(filepath.Join(dir, "step*.json"))
	if len(files) != 1 {
		b.Fatalf("profile files: %v", files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		b.Fatal(err)
	}
	var events []struct {
		Cat  string            `json:"cat"`
		Name string            `json:"name"`
		Dur  float64           `json:"dur"` // microseconds
		Args map[string]any    `json:"args"`
		_    map[string]string // keeps the decoder lenient
	}
	if err := json.Unmarshal(raw, &events); err != nil {
		b.Fatal(err)
	}
	// Each node's fastest run: on a machine shared with other work the
	// minimum is far steadier than the mean.
	byNode := map[string]float64{}
	nodeOp := map[string]string{}
	runs := 0
	for _, e := range events {
		if e.Cat == "Session" && e.Name == "model_run" {
			runs++
		}
		node, ok := strings.CutSuffix(e.Name, "_kernel_time")
		if e.Cat != "Node" || runs < 1 || !ok {
			continue
		}
		op, _ := e.Args["op_name"].(string)
		if v, seen := byNode[node]; !seen || e.Dur < v {
			byNode[node] = e.Dur
		}
		nodeOp[node] = op
	}
	byOp := map[string]float64{}
	var total float64
	for node, v := range byNode {
		byOp[nodeOp[node]] += v
		total += v
	}
	n := 1.0
	type kv struct {
		k string
		v float64
	}
	sorted := func(m map[string]float64) []kv {
		var out []kv
		for k, v := range m {
			out = append(out, kv{k, v})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].v > out[j].v })
		return out
	}
	b.Logf("%d runs profiled, kernels %.2f ms in all (each node's fastest run)", runs-1, total/n/1000)
	byPart := map[string]float64{}
	for node, v := range byNode {
		byPart[stepPart(node, nodeOp[node])] += v
	}
	for _, e := range sorted(byPart) {
		b.Logf("  %-40s %8.3f ms", e.k, e.v/n/1000)
	}
	for _, e := range sorted(byOp) {
		b.Logf("  %-24s %8.3f ms  %5.1f%%", e.k, e.v/n/1000, 100*e.v/total)
	}
	for i, e := range sorted(byNode) {
		if i == 80 {
			break
		}
		b.Logf("  %-60s %-16s %8.3f ms", e.k, nodeOp[e.k], e.v/n/1000)
	}
}

// stepPart names the part of the CNN's training step a node belongs to,
// from the names the training graph gives its nodes (backward nodes carry
// the forward node's name; ORT's layout nodes are on their own).
func stepPart(node, op string) string {
	grad := strings.HasPrefix(node, "grad/")
	switch {
	case strings.Contains(node, "BatchNormalization"):
		return "BatchNormalization (batch statistics)"
	case strings.Contains(node, "MaxPool"):
		return "MaxPool (forward and backward)"
	case op == "ConvTranspose":
		return "Conv input gradients (ConvTranspose)"
	case strings.Contains(node, "/Conv") && grad:
		return "Conv weight gradients"
	case op == "Conv":
		return "Conv forward"
	case strings.HasPrefix(op, "Reorder"):
		return "layout changes (ReorderInput/Output)"
	case strings.Contains(node, "Relu"):
		return "ReLU (forward and backward)"
	case strings.HasPrefix(node, "grad/Sum_"):
		return "sums of a tensor's gradients"
	}
	return "other (loss, pooling head, Gemm)"
}
