// Command onnx-cria shrinks trained neural networks stored as ONNX.
//
//	onnx-cria shrink in.onnx out.onnx --target 0.5 --calib calib.npz
//
// Run `onnx-cria help` for the commands. Exit status: 0 on success, 1 when
// the work failed (bad input, invalid model, runtime error), 2 for a usage
// error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// version is set by the build (-ldflags "-X main.version=...").
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	commands = []command{
		{"shrink", "prune a model to a target parameter reduction", runShrink},
		{"score", "score every unit of the prunable groups", runScore},
		{"ablate", "remove the lowest-, highest- and random-scored units of one group", runAblate},
		{"finetune", "recover accuracy by fine-tuning or distillation", runFinetune},
		{"eval", "measure accuracy or perplexity and throughput on a dataset", runEval},
		{"inspect", "describe a model: inputs, outputs, ops, parameters, groups", runInspect},
		{"version", "print the version of onnx-cria and ONNX Runtime", runVersion},
	}
}

// usageError marks errors that should exit with status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) > 1 {
			return run([]string{args[1], "--help"}, stdout, stderr)
		}
		printUsage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			}
			var ue *usageError
			if errors.As(err, &ue) {
				fmt.Fprintf(stderr, "onnx-cria %s: %v\nRun 'onnx-cria %s --help' for usage.\n", c.name, err, c.name)
				return 2
			}
			fmt.Fprintf(stderr, "onnx-cria %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "onnx-cria: unknown command %q\n", args[0])
	printUsage(stderr)
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "onnx-cria shrinks trained neural networks stored as ONNX.\n\nUsage:\n\n\tonnx-cria <command> [arguments]\n\nCommands:\n\n")
	for _, c := range commands {
		fmt.Fprintf(w, "\t%-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'onnx-cria <command> --help' for a command's flags.\n")
}

// parse parses flags that may come before, between or after positional
// arguments, and checks the number of positionals.
func parse(fs *flagSet, args []string, minPos, maxPos int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < minPos || (maxPos >= 0 && len(pos) > maxPos) {
		fs.Usage()
		switch {
		case maxPos == minPos:
			return nil, usagef("want %d argument(s), got %d", minPos, len(pos))
		case maxPos < 0:
			return nil, usagef("want at least %d argument(s), got %d", minPos, len(pos))
		}
		return nil, usagef("want %d to %d arguments, got %d", minPos, maxPos, len(pos))
	}
	return pos, nil
}
