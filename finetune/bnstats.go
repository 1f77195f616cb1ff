package finetune

import "github.com/onnx-cria/onnx-cria/autodiff"

// updateRunning applies one step's batch statistics to the running ones.
func updateRunning(st []autodiff.BNStat, running [][]float32, batch [][]float32) {
	for k, s := range st {
		m := float32(s.Momentum)
		for j, v := range [][]float32{batch[2*k], batch[2*k+1]} {
			r := running[2*k+j]
			for i := range r {
				r[i] = m*r[i] + (1-m)*v[i]
			}
		}
	}
}
