package onnxio

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSaveKeepsWhatItReads: Save neither replaces nor removes the model's
// own data files or files in Keep, and removes only its own leftovers.
func TestSaveKeepsWhatItReads(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "m.onnx")
	src := mustLoad(t, "testdata/conv_bn.onnx")
	if err := src.Save(out, &SaveOptions{ExternalData: "shared.data", ExternalThreshold: 1}); err != nil {
		t.Fatal(err)
	}
	own := mustLoad(t, out) // reads shared.data
	shared := filepath.Join(dir, "shared.data")

	// Saving over itself with the data name it reads from.
	for _, o := range []*SaveOptions{nil, {ExternalData: "shared.data"}} {
		err := own.Save(out, o)
		if o == nil {
			// The default name, m.onnx.data, is free: allowed, and the
			// model's own shared.data stays although m.onnx no longer uses it.
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "shared.data") || !strings.Contains(err.Error(), "read by this run") {
			t.Errorf("Save over the model's own data file: %v", err)
		}
	}
	if _, err := os.Stat(shared); err != nil {
		t.Fatalf("the model's own data file was removed: %v", err)
	}
	if _, err := own.RawData(own.Graph().Initializer[0]); err != nil {
		t.Fatalf("the saved model can no longer read its data: %v", err)
	}

	// A file in Keep: never the new data file, never removed as the
	// replaced model's data.
	if err := src.Save(out, &SaveOptions{ExternalData: "shared.data", ExternalThreshold: 1}); err != nil {
		t.Fatal(err)
	}
	keep := &SaveOptions{ExternalData: "shared.data", Keep: []string{shared}}
	if err := src.Save(out, keep); err == nil || !strings.Contains(err.Error(), "read by this run") {
		t.Errorf("Save over a kept file: %v", err)
	}
	link := filepath.Join(dir, "alias.data")
	if err := os.Link(shared, link); err != nil {
		t.Skip("hard links:", err)
	}
	if err := src.Save(out, &SaveOptions{ExternalData: "alias.data", Keep: []string{shared}}); err == nil {
		t.Error("Save over a hard link of a kept file succeeded")
	}
	os.Remove(link)
	// Leftovers of interrupted Saves to m.onnx go; other files stay.
	leftovers := []string{".m.onnx.tmp-123", ".m.onnx.data.tmp-456", ".shared.data.tmp-7"}
	others := []string{".other.onnx.tmp-1", "m.onnx.tmp-2", ".m.onnx.tmp-x", "notes.txt"}
	for _, n := range append(slices.Clone(leftovers), others...) {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Save(out, &SaveOptions{Keep: []string{shared}}); err != nil {
		t.Fatal(err)
	}
	want := append([]string{"m.onnx", "shared.data"}, others...)
	slices.Sort(want)
	if got := dirEntries(t, dir); !slices.Equal(got, want) {
		t.Errorf("directory holds %v, want %v", got, want)
	}
	// Without Keep, the replaced model's data goes once nothing uses it.
	if err := src.Save(out, &SaveOptions{ExternalData: "shared.data", ExternalThreshold: 1}); err != nil {
		t.Fatal(err)
	}
	if err := src.Save(out, nil); err != nil { // inline
		t.Fatal(err)
	}
	for _, n := range []string{"shared.data", "m.onnx.data"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			t.Errorf("%s, no longer used, was kept", n)
		}
	}
}
