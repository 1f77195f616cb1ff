package main

import (
	"errors"
	"io"
)

// Commands still being built: each reports so plainly instead of pretending.
func runScore(args []string, stdout, stderr io.Writer) error    { return errors.New("not built yet") }
func runAblate(args []string, stdout, stderr io.Writer) error   { return errors.New("not built yet") }
func runFinetune(args []string, stdout, stderr io.Writer) error { return errors.New("not built yet") }
