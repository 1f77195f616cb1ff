package ort

import "testing"

func BenchmarkNewSession(b *testing.B) {
	model := encode(b, mlpModel())
	for b.Loop() {
		s, err := NewSession(model, []string{"y", "h"}, Config{Threads: 1})
		if err != nil {
			b.Fatal(err)
		}
		s.Destroy()
	}
}

func BenchmarkRun(b *testing.B) {
	s := mustSession(b)(NewSessionForModel(mlpModel(), []string{"h"}, Config{Threads: 1}))
	x := Tensor{Name: "x", Shape: []int64{3, 4}, Data: mlpX}
	for b.Loop() {
		if _, err := s.Run(x); err != nil {
			b.Fatal(err)
		}
	}
}
