package ops

import "strings"

// Class is what the consumers of the registry need to know of an op that
// has no logic of its own in them: a set of the flags below.
type Class uint16

const (
	// Unary: elementwise in the first input; further inputs are scalar
	// parameters (Clip's bounds, Dropout's ratio). Every output has the
	// first input's shape.
	Unary Class = 1 << iota
	// Broadcast: elementwise over all inputs, with multidirectional
	// (NumPy) broadcasting.
	Broadcast
	// Activation: a nonlinearity; capture observes a group's states at its
	// input and output.
	Activation
	// Predicate: the output is boolean.
	Predicate
	// NoUnits: the outputs carry no unit axes (shapes, sizes, constants,
	// random tensors of a given shape).
	NoUnits
	// NoGradient: no gradient flows through the op (comparisons, indices,
	// piecewise-constant functions), so it needs no backward rule.
	NoGradient
)

// Elementwise reports whether c is Unary or Broadcast.
func (c Class) Elementwise() bool { return c&(Unary|Broadcast) != 0 }

var classNames = []string{"Unary", "Broadcast", "Activation", "Predicate", "NoUnits", "NoGradient"}

func (c Class) String() string {
	var parts []string
	for k, name := range classNames {
		if c&(1<<k) != 0 {
			parts = append(parts, name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// Facts is the class of every op that the consumers handle by class
// alone. The versions are those at which ONNX introduced each op.
var Facts = NewTable[Class](nil)

func init() {
	act := Unary | Activation
	Facts.Add("", 1, act, "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh", "Elu", "Selu",
		"Softplus", "Softsign", "Clip")
	Facts.Add("", 9, act, "Erf") // the nonlinearity of a decomposed GELU
	Facts.Add("", 10, act, "ThresholdedRelu")
	Facts.Add("", 12, act, "Celu")
	Facts.Add("", 14, act, "HardSwish")
	Facts.Add("", 18, act, "Mish")
	Facts.Add("", 20, act, "Gelu")
	Facts.Add("", 1, Broadcast|Activation, "PRelu") // the slope broadcasts to the input

	Facts.Add("", 1, Unary, "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Identity", "Cast", "Dropout")
	Facts.Add("", 7, Unary, "Sin", "Cos")
	Facts.Add("", 9, Unary, "Shrink")
	Facts.Add("", 1, Unary|NoGradient, "Floor", "Ceil")
	Facts.Add("", 9, Unary|NoGradient, "Sign")
	Facts.Add("", 11, Unary|NoGradient, "Round")
	test := Unary | Predicate | NoGradient
	Facts.Add("", 1, test, "Not")
	Facts.Add("", 9, test, "IsNaN")
	Facts.Add("", 10, test, "IsInf")

	Facts.Add("", 1, Broadcast, "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean")
	Facts.Add("", 9, Broadcast, "Where")
	Facts.Add("", 10, Broadcast, "Mod")
	Facts.Add("", 11, Broadcast|NoGradient, "BitShift") // integers only
	cmp := Broadcast | Predicate | NoGradient
	Facts.Add("", 1, cmp, "Equal", "Less", "Greater", "And", "Or", "Xor")
	Facts.Add("", 12, cmp, "LessOrEqual", "GreaterOrEqual")

	Facts.Add("", 1, NoUnits|NoGradient, "Shape", "Size", "Constant", "RandomNormalLike", "RandomUniformLike")
	Facts.Add("", 9, NoUnits|NoGradient, "ConstantOfShape", "EyeLike")
	Facts.Add("", 11, NoUnits|NoGradient, "Range")
	Facts.Add("", 1, NoGradient, "ArgMax", "ArgMin")
	Facts.Add("", 9, NoGradient, "NonZero", "OneHot")
	Facts.Add("", 15, NoGradient, "Bernoulli")
}
