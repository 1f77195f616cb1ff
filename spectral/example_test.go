package spectral_test

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"

	"github.com/onnx-cria/onnx-cria/spectral"
)

func ExampleScore() {
	// 200 samples of a 40-neuron ReLU layer; neuron 3 is dead (constant).
	rng := rand.New(rand.NewPCG(1, 2))
	z := mat.NewDense(200, 40, nil)
	z.Apply(func(i, j int, _ float64) float64 {
		if j == 3 {
			return -1
		}
		return rng.NormFloat64()
	}, z)
	var a mat.Dense
	a.Apply(func(_, _ int, v float64) float64 { return math.Max(v, 0) }, z)

	r, err := spectral.Score(z, &a, spectral.DefaultOptions())
	if err != nil {
		panic(err)
	}
	fmt.Println("solver:", r.Solver, "k:", r.GraphX.K, "s:", len(r.Eigenvalues))
	fmt.Printf("scores in [0,1]: %d, max %.0f\n", len(r.Scores), mat.Max(mat.NewVecDense(40, r.Scores)))
	// Output:
	// solver: dense k: 10 s: 2
	// scores in [0,1]: 40, max 1
}
