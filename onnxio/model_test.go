package onnxio

import (
	"archive/zip"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// TestRoundTripTestdata: Load then Encode, and Load then Save, give back the
// bytes of every model in onnxio/testdata.
func TestRoundTripTestdata(t *testing.T) {
	local, _ := testModels(t)
	for _, path := range local {
		t.Run(filepath.Base(path), func(t *testing.T) {
			checkRoundTrip(t, path)
		})
	}
}

// TestRoundTripFixtures does the same for the trained fixtures under the
// repository's testdata/.
func TestRoundTripFixtures(t *testing.T) {
	_, fixtures := testModels(t)
	if len(fixtures) == 0 {
		t.Fatal("no *.onnx under ../testdata: the committed fixtures are missing")
	}
	for _, path := range fixtures {
		t.Run(strings.TrimPrefix(filepath.ToSlash(path), "../testdata/"), func(t *testing.T) {
			checkRoundTrip(t, path)
		})
	}
}

func checkRoundTrip(t *testing.T, path string) {
	want := readFile(t, path)
	m := mustLoad(t, path)
	if m.Size != int64(len(want)) || m.Path != path || m.Dir != filepath.Dir(path) {
		t.Errorf("Size, Path, Dir = %d, %q, %q", m.Size, m.Path, m.Dir)
	}
	if m.HasExternalData() {
		// Encode inlines external data, and Save lays the data file out
		// afresh, so neither can give the file back; the model message itself
		// must still serialize to the same bytes.
		got, err := proto.Marshal(m.Proto)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("re-marshalled model differs from %s (%d vs %d bytes)", path, len(got), len(want))
		}
		return
	}
	got, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Encode differs from %s: %d vs %d bytes, first difference at %d", path, len(got), len(want), firstDiff(got, want))
	}
	dir := t.TempDir()
	out := filepath.Join(dir, filepath.Base(path))
	if err := m.Save(out, nil); err != nil {
		t.Fatal(err)
	}
	if saved := readFile(t, out); !bytes.Equal(saved, want) {
		t.Fatalf("Save differs from %s: %d vs %d bytes, first difference at %d", path, len(saved), len(want), firstDiff(saved, want))
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Errorf("Save left %v in the directory, want only the model", names)
	}
	// Load, Save, Load again: the same message.
	again := mustLoad(t, out)
	if !proto.Equal(again.Proto, m.Proto) || again.Hash != m.Hash {
		t.Error("reloaded model differs")
	}
}

func firstDiff(a, b []byte) int {
	for k := range min(len(a), len(b)) {
		if a[k] != b[k] {
			return k
		}
	}
	return min(len(a), len(b))
}

type unknownInfo struct {
	NodeField  string `json:"node_field"`
	ModelField string `json:"model_field"`
	Node       string `json:"node"`
}

func loadUnknownInfo(t *testing.T) (node, model []byte, nodeName string) {
	var info unknownInfo
	if err := json.Unmarshal(readFile(t, "testdata/unknown.json"), &info); err != nil {
		t.Fatal(err)
	}
	node, err1 := hex.DecodeString(info.NodeField)
	model, err2 := hex.DecodeString(info.ModelField)
	if err1 != nil || err2 != nil || len(node) == 0 || len(model) == 0 {
		t.Fatalf("bad unknown.json: %v %v", err1, err2)
	}
	return node, model, info.Node
}

// TestUnknownFieldsSurvive: NodeProto.device_configurations (10) and
// ModelProto.configuration (26), which this schema does not name, are kept
// through Load, an edit, Save and Load. make_models.py checked that onnx
// itself reads the file and writes it back unchanged.
func TestUnknownFieldsSurvive(t *testing.T) {
	nodeField, modelField, nodeName := loadUnknownInfo(t)
	orig := readFile(t, "testdata/unknown.onnx")
	if !bytes.Contains(orig, nodeField) || !bytes.HasSuffix(orig, modelField) {
		t.Fatal("unknown.onnx does not hold the unknown fields that unknown.json describes")
	}
	m := mustLoad(t, "testdata/unknown.onnx")
	if got := m.Proto.ProtoReflect().GetUnknown(); !bytes.Equal(got, modelField) {
		t.Errorf("model's unknown fields = %x, want %x", got, modelField)
	}
	n := m.Graph().Node[0]
	if n.GetName() != nodeName {
		t.Fatalf("node 0 is %q, want %q", n.GetName(), nodeName)
	}
	if got := n.ProtoReflect().GetUnknown(); !bytes.Equal(got, nodeField) {
		t.Errorf("node's unknown fields = %x, want %x", got, nodeField)
	}

	// Edit the model (as the rewriter would), save, reload.
	m.Proto.ProducerName = proto.String("onnx-cria test")
	n.Name = proto.String("renamed")
	dir := t.TempDir()
	out := filepath.Join(dir, "edited.onnx")
	if err := m.Save(out, nil); err != nil {
		t.Fatal(err)
	}
	b := readFile(t, out)
	if !bytes.Contains(b, nodeField) || !bytes.Contains(b, modelField) {
		t.Fatal("unknown fields lost by Save")
	}
	back := mustLoad(t, out)
	if got := back.Graph().Node[0].ProtoReflect().GetUnknown(); !bytes.Equal(got, nodeField) {
		t.Errorf("after reload the node's unknown fields = %x", got)
	}
	if got := back.Proto.ProtoReflect().GetUnknown(); !bytes.Equal(got, modelField) {
		t.Errorf("after reload the model's unknown fields = %x", got)
	}
	// Saving with external data keeps them too.
	ext := filepath.Join(dir, "ext.onnx")
	if err := back.Save(ext, &SaveOptions{ExternalData: "ext.data", ExternalThreshold: 1}); err != nil {
		t.Fatal(err)
	}
	if b := readFile(t, ext); !bytes.Contains(b, nodeField) || !bytes.Contains(b, modelField) {
		t.Fatal("unknown fields lost by Save with external data")
	}
}

// initValues maps every initializer of m to its raw bytes.
func initValues(t *testing.T, m *Model) map[string][]byte {
	t.Helper()
	vals := map[string][]byte{}
	for _, init := range m.Graph().GetInitializer() {
		raw, err := m.RawData(init)
		if err != nil {
			t.Fatal(err)
		}
		vals[init.GetName()] = append([]byte(nil), raw...)
	}
	return vals
}

func sameValues(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d tensors, want %d", len(got), len(want))
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || !bytes.Equal(g, w) {
			t.Errorf("tensor %q: %d bytes differ from the original's %d", name, len(g), len(w))
		}
	}
}

func externalRefs(t *testing.T, tp *onnxpb.TensorProto) (loc string, off, length int64) {
	t.Helper()
	off, length = -1, -1
	for _, kv := range tp.GetExternalData() {
		var err error
		switch kv.GetKey() {
		case "location":
			loc = kv.GetValue()
		case "offset":
			off, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		case "length":
			length, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return loc, off, length
}

// TestExternalLoad: tensors of a model that onnx saved with external data
// read back equal to those of the same model with inline data.
func TestExternalLoad(t *testing.T) {
	ext := mustLoad(t, "testdata/external.onnx")
	inline := mustLoad(t, "testdata/conv_bn.onnx")
	if !ext.HasExternalData() || inline.HasExternalData() {
		t.Fatal("HasExternalData wrong")
	}
	for _, init := range ext.Graph().Initializer {
		if init.GetDataLocation() != onnxpb.TensorProto_EXTERNAL || init.RawData != nil {
			t.Fatalf("tensor %q is not stored externally", init.GetName())
		}
	}
	want := initValues(t, inline)
	sameValues(t, initValues(t, ext), want)
	// Float64s goes through the same path.
	ix := NewIndex(ext.Graph())
	w := ix.Init["fc.weight"]
	vals, err := ext.Float64s(w)
	if err != nil {
		t.Fatal(err)
	}
	wantVals, _ := DecodeFloat64s(Float, want["fc.weight"])
	for k := range vals {
		if vals[k] != wantVals[k] {
			t.Fatalf("fc.weight[%d] = %v, want %v", k, vals[k], wantVals[k])
		}
	}
	if err := Validate(ext); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// Without a model to resolve it, external data is an error naming the tensor.
	var nilModel *Model
	if _, err := nilModel.RawData(w); err == nil || !strings.Contains(err.Error(), "fc.weight") {
		t.Errorf("RawData without a model: %v", err)
	}
}

// TestExternalSave: Save with an external data file writes page-aligned
// tensors, leaves the model unchanged, and reloads with equal values.
func TestExternalSave(t *testing.T) {
	for _, src := range []string{"testdata/conv_bn.onnx", "testdata/external.onnx", "testdata/typed.onnx"} {
		t.Run(filepath.Base(src), func(t *testing.T) {
			m := mustLoad(t, src)
			want := initValues(t, m)
			before := proto.Clone(m.Proto)
			dir := t.TempDir()
			out := filepath.Join(dir, "model.onnx")
			if err := m.Save(out, &SaveOptions{ExternalData: "x.data", ExternalThreshold: 1}); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(before, m.Proto) {
				t.Fatal("Save changed the model")
			}
			if names := dirEntries(t, dir); strings.Join(names, ",") != "model.onnx,x.data" {
				t.Fatalf("directory holds %v", names)
			}
			data := readFile(t, filepath.Join(dir, "x.data"))
			back := mustLoad(t, out)
			var nExt int
			for _, init := range back.Graph().Initializer {
				raw := want[init.GetName()]
				if len(raw) == 0 {
					continue // empty tensors have nothing to store
				}
				loc, off, length := externalRefs(t, init)
				if init.GetDataLocation() != onnxpb.TensorProto_EXTERNAL || loc != "x.data" {
					t.Errorf("tensor %q: location %q, data_location %v", init.GetName(), loc, init.GetDataLocation())
					continue
				}
				nExt++
				if off%4096 != 0 {
					t.Errorf("tensor %q at offset %d, not page-aligned", init.GetName(), off)
				}
				if length != int64(len(raw)) || off+length > int64(len(data)) || !bytes.Equal(data[off:off+length], raw) {
					t.Errorf("tensor %q: bytes [%d, +%d) of x.data are not its values", init.GetName(), off, length)
				}
				if init.RawData != nil || init.FloatData != nil || init.Int32Data != nil || init.Int64Data != nil || init.DoubleData != nil {
					t.Errorf("tensor %q keeps inline data too", init.GetName())
				}
			}
			if nExt == 0 {
				t.Fatal("no tensor went to external data")
			}
			sameValues(t, initValues(t, back), want)
			if err := Validate(back); err != nil {
				t.Errorf("Validate: %v", err)
			}
			// Encode of the reloaded model inlines everything again.
			b, err := back.Encode()
			if err != nil {
				t.Fatal(err)
			}
			inl, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if inl.HasExternalData() {
				t.Error("Encode left external references")
			}
			sameValues(t, initValues(t, inl), want)
		})
	}
}

// TestExternalThreshold: tensors under the threshold stay inline.
func TestExternalThreshold(t *testing.T) {
	m := mustLoad(t, "testdata/conv_bn.onnx")
	dir := t.TempDir()
	out := filepath.Join(dir, "m.onnx")
	if err := m.Save(out, &SaveOptions{ExternalData: "m.bin", ExternalThreshold: 400}); err != nil {
		t.Fatal(err)
	}
	back := mustLoad(t, out)
	for _, init := range back.Graph().Initializer {
		raw, err := back.RawData(init)
		if err != nil {
			t.Fatal(err)
		}
		ext := init.GetDataLocation() == onnxpb.TensorProto_EXTERNAL
		if ext != (len(raw) >= 400) {
			t.Errorf("tensor %q of %d bytes: external=%v with threshold 400", init.GetName(), len(raw), ext)
		}
	}
	sameValues(t, initValues(t, back), initValues(t, m))
}

// TestSaveExternalModelWithoutOptions: a model that had external data keeps
// it, in "<name>.data" beside the new file.
func TestSaveExternalModelWithoutOptions(t *testing.T) {
	m := mustLoad(t, "testdata/external.onnx")
	want := initValues(t, m)
	dir := t.TempDir()
	out := filepath.Join(dir, "copy.onnx")
	if err := m.Save(out, nil); err != nil {
		t.Fatal(err)
	}
	if names := dirEntries(t, dir); strings.Join(names, ",") != "copy.onnx,copy.onnx.data" {
		t.Fatalf("directory holds %v", names)
	}
	back := mustLoad(t, out)
	if !back.HasExternalData() {
		t.Error("external data was inlined")
	}
	for _, init := range back.Graph().Initializer {
		if loc, off, _ := externalRefs(t, init); loc != "copy.onnx.data" || off%4096 != 0 {
			t.Errorf("tensor %q: location %q offset %d", init.GetName(), loc, off)
		}
	}
	sameValues(t, initValues(t, back), want)
	// The source model still reads its own data.
	sameValues(t, initValues(t, m), want)
}

// TestEncodeInlinesExternal: Encode of a model with external data gives a
// self-contained model with the same values, and leaves m as it was.
func TestEncodeInlinesExternal(t *testing.T) {
	m := mustLoad(t, "testdata/external.onnx")
	before := proto.Clone(m.Proto)
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(before, m.Proto) {
		t.Fatal("Encode changed the model")
	}
	inl, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if inl.HasExternalData() {
		t.Fatal("still external")
	}
	for _, init := range inl.Graph().Initializer {
		if len(init.GetExternalData()) != 0 || init.DataLocation != nil {
			t.Errorf("tensor %q keeps external_data fields", init.GetName())
		}
	}
	sameValues(t, initValues(t, inl), initValues(t, mustLoad(t, "testdata/conv_bn.onnx")))
	// Inline data from an external model encodes like the inline original.
	orig := readFile(t, "testdata/conv_bn.onnx")
	if len(b) < len(orig)-64 || len(b) > len(orig)+64 {
		t.Errorf("inlined model is %d bytes, the inline original %d", len(b), len(orig))
	}
}

// extModel is a one-initializer model whose tensor lives in external data
// with the given key/value pairs; dir holds data.bin with 16 bytes.
func extModel(t *testing.T, kv ...string) (*Model, *onnxpb.TensorProto) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "data.bin"), bytes.Repeat([]byte{1, 0, 0, 0}, 4), 0o644); err != nil {
		t.Fatal(err)
	}
	tp := &onnxpb.TensorProto{
		Name: proto.String("w"), DataType: proto.Int32(int32(Int32)), Dims: []int64{2},
		DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(),
	}
	for k := 0; k+1 < len(kv); k += 2 {
		tp.ExternalData = append(tp.ExternalData, &onnxpb.StringStringEntryProto{Key: proto.String(kv[k]), Value: proto.String(kv[k+1])})
	}
	g := graph{
		nodes:   []*onnxpb.NodeProto{node("Identity", "id", ins("w"), outs("y"))},
		outputs: []*onnxpb.ValueInfoProto{viT("y", Int32, 2)},
		inits:   []*onnxpb.TensorProto{tp},
	}
	m := g.model(13)
	m.Path = filepath.Join(dir, "m.onnx")
	m.Dir = dir
	return m, tp
}

func TestExternalDataRefs(t *testing.T) {
	m, tp := extModel(t, "location", "data.bin", "offset", "4", "length", "8")
	v, err := m.Int64s(tp)
	if err != nil || !equalInts(v, []int64{1, 1}) {
		t.Fatalf("Int64s = %v, %v", v, err)
	}
	if err := Validate(m); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// Without length: the rest of the file, which must then fit the dims.
	m, tp = extModel(t, "location", "data.bin", "offset", "8")
	if v, err := m.Int64s(tp); err != nil || len(v) != 2 {
		t.Errorf("without length: %v, %v", v, err)
	}

	bad := []struct {
		kv   []string
		want string
	}{
		{[]string{"location", "../data.bin"}, "outside"},
		{[]string{"location", "sub/../../data.bin"}, "outside"},
		{[]string{"location", "/abs/data.bin"}, "outside"},
		{[]string{"location", ".."}, "outside"},
		{[]string{"offset", "0"}, "without a location"},
		{[]string{"location", "missing.bin"}, "missing.bin"},
		{[]string{"location", "data.bin", "offset", "x"}, "offset"},
		{[]string{"location", "data.bin", "offset", "-4"}, "offset"},
		{[]string{"location", "data.bin", "length", "-8"}, "length"},
		{[]string{"location", "data.bin", "offset", "12", "length", "8"}, "holds 16 bytes"},
		{[]string{"location", "data.bin", "offset", "0", "length", "12"}, "need 8"},
		{[]string{"location", "data.bin", "offset", "9223372036854775800", "length", "9223372036854775800"}, "holds 16 bytes"},
		{[]string{"location", "data.bin", "offset", "8", "length", "9223372036854775807"}, "holds 16 bytes"},
	}
	for _, c := range bad {
		m, tp := extModel(t, c.kv...)
		_, err := m.RawData(tp)
		if err == nil || !strings.Contains(err.Error(), `"w"`) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: RawData error %v, want one naming tensor \"w\" and saying %q", c.kv, err, c.want)
		}
		if _, err := m.Encode(); err == nil {
			t.Errorf("%v: Encode succeeded", c.kv)
		}
		if err := m.Save(filepath.Join(t.TempDir(), "o.onnx"), nil); err == nil {
			t.Errorf("%v: Save succeeded", c.kv)
		}
		if err := Validate(m); err == nil {
			t.Errorf("%v: Validate accepted it", c.kv)
		}
	}
}

// noTemp fails if dir holds a temporary file of Save.
func noTemp(t *testing.T, dir string) {
	t.Helper()
	for _, name := range dirEntries(t, dir) {
		if strings.Contains(name, ".tmp-") {
			t.Errorf("temporary file %s left in %s", name, dir)
		}
	}
}

// TestSaveFailuresLeaveNoTempFiles: every way Save can fail cleans up.
func TestSaveFailuresLeaveNoTempFiles(t *testing.T) {
	inline := mustLoad(t, "testdata/conv_bn.onnx")
	ext := mustLoad(t, "testdata/external.onnx")
	opts := &SaveOptions{ExternalData: "w.data", ExternalThreshold: 1}

	t.Run("missing directory", func(t *testing.T) {
		dir := t.TempDir()
		for _, o := range []*SaveOptions{nil, opts} {
			if err := inline.Save(filepath.Join(dir, "no", "such", "m.onnx"), o); err == nil {
				t.Error("Save into a missing directory succeeded")
			}
		}
		noTemp(t, dir)
	})
	t.Run("target is a directory", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "m.onnx")
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		// Keep the directory non-empty, so that no rename can replace it.
		if err := os.WriteFile(filepath.Join(target, "keep"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			m *Model
			o *SaveOptions
		}{{inline, nil}, {inline, opts}, {ext, nil}} {
			err := c.m.Save(target, c.o)
			if err == nil {
				t.Fatal("Save over a directory succeeded")
			}
			if !strings.Contains(err.Error(), "m.onnx") {
				t.Errorf("error %q does not name the file", err)
			}
			noTemp(t, dir)
		}
	})
	t.Run("data file name is a directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "w.data", "x"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := inline.Save(filepath.Join(dir, "m.onnx"), opts); err == nil {
			t.Fatal("Save succeeded")
		}
		noTemp(t, dir)
		if _, err := os.Stat(filepath.Join(dir, "m.onnx")); err == nil {
			t.Error("model written although its data file could not be")
		}
	})
	t.Run("unreadable external data", func(t *testing.T) {
		m, _ := extModel(t, "location", "gone.bin")
		dir := t.TempDir()
		if err := m.Save(filepath.Join(dir, "m.onnx"), nil); err == nil {
			t.Fatal("Save succeeded")
		}
		if names := dirEntries(t, dir); len(names) != 0 {
			t.Errorf("failed Save left %v", names)
		}
	})
	t.Run("bad data file names", func(t *testing.T) {
		dir := t.TempDir()
		for _, name := range []string{"sub/x.data", "../x.data", "/abs/x.data", ".", "..", "m.onnx"} {
			if err := inline.Save(filepath.Join(dir, "m.onnx"), &SaveOptions{ExternalData: name}); err == nil {
				t.Errorf("ExternalData %q accepted", name)
			}
		}
		if names := dirEntries(t, dir); len(names) != 0 {
			t.Errorf("failed Saves left %v", names)
		}
	})
	t.Run("unwritable directory", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("running as root: permissions do not stop writes (the other subtests cover failed writes)")
		}
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o755)
		for _, o := range []*SaveOptions{nil, opts} {
			if err := inline.Save(filepath.Join(dir, "m.onnx"), o); err == nil {
				t.Error("Save into a read-only directory succeeded")
			}
		}
		if names := dirEntries(t, dir); len(names) != 0 {
			t.Errorf("failed Saves left %v", names)
		}
	})
}

// TestSaveReplacesAtomically: saving over an existing file replaces it and
// leaves it readable by others, like the files the user started with.
func TestSaveReplacesAtomically(t *testing.T) {
	m := mustLoad(t, "testdata/conv_bn.onnx")
	dir := t.TempDir()
	out := filepath.Join(dir, "m.onnx")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(out, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, out), readFile(t, "testdata/conv_bn.onnx")) {
		t.Error("not replaced")
	}
	if err := m.Save(out, &SaveOptions{ExternalData: "m.data", ExternalThreshold: 1}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"m.onnx", "m.data"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644", name, st.Mode().Perm())
		}
	}
	noTemp(t, dir)
}

func TestWriteFileAtomicRelative(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := WriteFileAtomic("f.bin", []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if b := readFile(t, filepath.Join(dir, "f.bin")); string(b) != "abc" {
		t.Errorf("wrote %q", b)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v", names)
	}
}

// TestLoadErrors: inputs that are not ONNX models give clear errors that name
// the file.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	model := readFile(t, "testdata/conv_bn.onnx")
	rnd := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(rnd)
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	fw, _ := zw.Create("x.npy")
	fw.Write([]byte("\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"))
	zw.Close()

	cases := []struct {
		name, path, want string
	}{
		{"empty", write("empty.onnx", nil), "empty"},
		{"truncated", write("trunc.onnx", model[:len(model)/2]), "truncated"},
		{"random", write("random.onnx", rnd), "ONNX"},
		{"npz", write("calib.npz", zbuf.Bytes()), "ONNX"},
		{"json", write("model.json", []byte(`{"ir_version": 8, "graph": {"node": []}}`)), "ONNX"},
		{"text", write("notes.txt", []byte("hello, world\n")), "ONNX"},
		{"directory", dir, "directory"},
		{"missing", filepath.Join(dir, "missing.onnx"), "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Load(c.path)
			if err == nil {
				t.Fatalf("Load(%s) succeeded: %v", c.name, m.Proto)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.path) {
				t.Errorf("error %q does not name %s", msg, c.path)
			}
			if !strings.Contains(msg, c.want) {
				t.Errorf("error %q does not say %q", msg, c.want)
			}
		})
	}
}

// TestDecodeRequiresModel: a valid protobuf that is not a model is refused.
func TestDecodeRequiresModel(t *testing.T) {
	noGraph, _ := proto.Marshal(&onnxpb.ModelProto{IrVersion: proto.Int64(8)})
	noIR, _ := proto.Marshal(&onnxpb.ModelProto{Graph: &onnxpb.GraphProto{}})
	for name, b := range map[string][]byte{"no graph": noGraph, "no ir_version": noIR, "zeros": make([]byte, 10)} {
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	m, err := Decode(mustEncode(t, graph{}.model(13)))
	if err != nil {
		t.Fatal(err)
	}
	if m.Path != "" || m.Name() != "model" || m.Size == 0 || len(m.Hash) != 64 {
		t.Errorf("Path %q Name %q Size %d Hash %q", m.Path, m.Name(), m.Size, m.Hash)
	}
}

func mustEncode(t testing.TB, m *Model) []byte {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEveryPrefix: every prefix of a small model decodes to an error or a
// model that the rest of the package handles without panicking.
func TestEveryPrefix(t *testing.T) {
	for _, path := range []string{"testdata/constant.onnx", "testdata/halfs.onnx", "testdata/typed.onnx", "testdata/unknown.onnx"} {
		b := readFile(t, path)
		var ok int
		for n := 0; n < len(b); n++ {
			m, err := Decode(b[:n])
			if err != nil {
				if err.Error() == "" {
					t.Fatalf("%s[:%d]: empty error", path, n)
				}
				continue
			}
			ok++
			exercise(m)
		}
		t.Logf("%s: %d of %d prefixes decode", path, ok, len(b))
	}
}

// exercise runs everything that reads a decoded model; it must not panic.
func exercise(m *Model) {
	_ = Validate(m)
	InferShapes(m, true)
	if g := m.Graph(); g != nil {
		ix := NewIndex(g)
		for name := range ix.Producer {
			ix.Const(name)
		}
		for name := range ix.Init {
			if t := ix.Const(name); t != nil {
				m.Float64s(t)
			}
		}
	}
	if b, err := m.Encode(); err == nil {
		if m2, err := Decode(b); err == nil {
			_ = Validate(m2)
		}
	}
}

func TestCloneIndependent(t *testing.T) {
	m := mustLoad(t, "testdata/conv_bn.onnx")
	c := m.Clone()
	c.Graph().Node[0].Name = proto.String("changed")
	c.Graph().Initializer[0].RawData[0] ^= 0xff
	if m.Graph().Node[0].GetName() == "changed" {
		t.Error("clone shares nodes")
	}
	if bytes.Equal(m.Graph().Initializer[0].RawData, c.Graph().Initializer[0].RawData) {
		t.Error("clone shares tensor bytes")
	}
	if c.Path != m.Path || c.Dir != m.Dir || c.Hash != m.Hash {
		t.Error("clone lost Path, Dir or Hash")
	}
}

func TestOpset(t *testing.T) {
	m := graph{}.model(13)
	m.Proto.OpsetImport = append(m.Proto.OpsetImport,
		&onnxpb.OperatorSetIdProto{Domain: proto.String("com.microsoft"), Version: proto.Int64(1)})
	if m.Opset("") != 13 || m.Opset("ai.onnx") != 13 || m.Opset("com.microsoft") != 1 || m.Opset("x") != 0 {
		t.Errorf("Opset: %d %d %d %d", m.Opset(""), m.Opset("ai.onnx"), m.Opset("com.microsoft"), m.Opset("x"))
	}
	m.Proto.OpsetImport[0].Domain = proto.String("ai.onnx")
	if m.Opset("") != 13 {
		t.Error("ai.onnx spelled out is not the default domain")
	}
	if mustLoad(t, "testdata/ops11.onnx").Opset("") != 11 || mustLoad(t, "testdata/ops17.onnx").Opset("") != 17 {
		t.Error("ops11/ops17 opsets")
	}
}

func TestParamCount(t *testing.T) {
	for _, c := range []struct {
		path         string
		elems, bytes int64
	}{
		// conv1 108+4, bn1 4x4, conv2 216, bn2 6x4, fc 120+5: the 1972
		// bytes onnx packed into external.data.
		{"testdata/conv_bn.onnx", 493, 1972},
		{"testdata/external.onnx", 493, 1972},
		{"testdata/halfs.onnx", 21, 42},                        // float16 10 + 3, bfloat16 8
		{"testdata/typed.onnx", 10, 52},                        // f32 6, f64 3, scalar 1, empty 0
		{"testdata/constant.onnx", 4 + 1 + 36 + 3 + 1, 4 * 45}, // Constant nodes count
	} {
		e, b := mustLoad(t, c.path).ParamCount()
		if e != c.elems || b != c.bytes {
			t.Errorf("%s: ParamCount = %d, %d; want %d, %d", c.path, e, b, c.elems, c.bytes)
		}
	}
	if got := int64(len(readFile(t, "testdata/external.data"))); got != 1972 {
		t.Errorf("external.data is %d bytes", got)
	}
}

// TestNestedExternalData: tensors in subgraphs, functions, sparse
// initializers and training graphs are found by HasExternalData, inlined by
// Encode and moved by Save.
func TestNestedExternalData(t *testing.T) {
	m, top := extModel(t, "location", "data.bin", "offset", "0", "length", "8")
	template := proto.Clone(top).(*onnxpb.TensorProto)
	ref := func(name string) *onnxpb.TensorProto {
		c := proto.Clone(template).(*onnxpb.TensorProto)
		c.Name = proto.String(name)
		return c
	}
	// Only nested tensors are external.
	if err := SetRawData(top, top.Dims, []byte{2, 0, 0, 0, 2, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if m.HasExternalData() {
		t.Fatal("inline model reported external data")
	}
	sub := graph{
		nodes:   []*onnxpb.NodeProto{node("Constant", "c", nil, outs("k"), aTensor("value", ref("in_constant")))},
		inits:   []*onnxpb.TensorProto{ref("in_branch")},
		outputs: []*onnxpb.ValueInfoProto{viT("k", Int32, 2)},
	}.proto("branch")
	g := m.Graph()
	g.Node = append(g.Node, node("If", "if", ins("c"), outs("z"), aGraph("then_branch", sub), aGraph("else_branch", sub)))
	g.SparseInitializer = []*onnxpb.SparseTensorProto{{Values: ref("sparse_values"), Indices: NewInt64Tensor("sparse_idx", []int64{2}, []int64{0, 1}), Dims: []int64{4}}}
	m.Proto.Functions = []*onnxpb.FunctionProto{{Name: proto.String("f"), Node: []*onnxpb.NodeProto{
		node("Constant", "fc", nil, outs("o"), aTensor("value", ref("in_function")))}}}
	m.Proto.TrainingInfo = []*onnxpb.TrainingInfoProto{{Initialization: graph{inits: []*onnxpb.TensorProto{ref("in_training")}}.proto("init")}}
	if !m.HasExternalData() {
		t.Fatal("nested external data not found")
	}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	inl, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	walkTensors(inl.Proto, func(tp *onnxpb.TensorProto) {
		n++
		if tp.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			t.Errorf("Encode left %q external", tp.GetName())
		}
	})
	if n != 9 { // w, 2x(constant, branch init), sparse values+indices, function, training
		t.Errorf("walked %d tensors, want 9", n)
	}
	if m.Name() != m.Path || (&Model{}).Name() != "model" {
		t.Error("Name")
	}
	// Save moves all of them into the new data file, even though both If
	// branches share one graph message here, and leaves m as it was.
	before := proto.Clone(m.Proto)
	out := filepath.Join(t.TempDir(), "n.onnx")
	if err := m.Save(out, nil); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(before, m.Proto) {
		t.Error("Save changed the model")
	}
	back := mustLoad(t, out)
	walkTensors(back.Proto, func(tp *onnxpb.TensorProto) {
		if tp.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			if loc, _, _ := externalRefs(t, tp); loc != "n.onnx.data" {
				t.Errorf("%q at %q", tp.GetName(), loc)
			}
			if v, err := back.Int64s(tp); err != nil || !equalInts(v, []int64{1, 1}) {
				t.Errorf("%q = %v, %v", tp.GetName(), v, err)
			}
		}
	})
}

// Derive must encode to the same bytes as the original, and edits to the
// derived graph's lists must not reach the original.
func TestDerive(t *testing.T) {
	m := mustLoad(t, "testdata/conv_bn.onnx")
	m.Proto.ProtoReflect().SetUnknown([]byte{0xf8, 0x3e, 0x01}) // field 999, varint 1
	before, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	d := m.Derive()
	got, err := d.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, got) {
		t.Fatal("derived model encodes differently")
	}
	g := d.Graph()
	g.Node = append(g.Node[:0], g.Node[len(g.Node)-1])
	g.Output = append(g.Output, NewValueInfo("x", Float, nil))
	g.Initializer[0] = zeros("z", 1)
	d.Proto.IrVersion = proto.Int64(3)
	after, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("editing the derived graph changed the original")
	}
	if d.Graph().Initializer[1] != m.Graph().Initializer[1] {
		t.Error("Derive copied a tensor it should share")
	}
}

// TestExternalDataSymlinks: the rule that external data stays in the
// model's directory holds after symbolic links are resolved; links that
// stay inside it are followed.
func TestExternalDataSymlinks(t *testing.T) {
	elsewhere := t.TempDir()
	secret := filepath.Join(elsewhere, "secret.bin")
	if err := os.WriteFile(secret, bytes.Repeat([]byte{7, 0, 0, 0}, 4), 0o644); err != nil {
		t.Fatal(err)
	}
	link := func(t *testing.T, target, name string) {
		t.Helper()
		if err := os.Symlink(target, name); err != nil {
			t.Skip("symlink:", err)
		}
	}
	bad := map[string]func(t *testing.T, dir string) string{
		"file link": func(t *testing.T, dir string) string {
			link(t, secret, filepath.Join(dir, "evil.bin"))
			return "evil.bin"
		},
		"relative file link": func(t *testing.T, dir string) string {
			rel, err := filepath.Rel(dir, secret)
			if err != nil {
				t.Fatal(err)
			}
			link(t, rel, filepath.Join(dir, "evil.bin"))
			return "evil.bin"
		},
		"directory link": func(t *testing.T, dir string) string {
			link(t, elsewhere, filepath.Join(dir, "sub"))
			return "sub/secret.bin"
		},
	}
	for name, setup := range bad {
		t.Run(name, func(t *testing.T) {
			m, tp := extModel(t)
			loc := setup(t, m.Dir)
			tp.ExternalData = []*onnxpb.StringStringEntryProto{{Key: proto.String("location"), Value: proto.String(loc)}, {Key: proto.String("length"), Value: proto.String("8")}}
			_, err := m.RawData(tp)
			if err == nil || !strings.Contains(err.Error(), `"w"`) || !strings.Contains(err.Error(), "outside the model's directory") {
				t.Errorf("RawData: %v; want the tensor named and the link refused", err)
			}
			if err := Validate(m); err == nil || !strings.Contains(err.Error(), "symbolic link") {
				t.Errorf("Validate: %v", err)
			}
			if _, err := m.Encode(); err == nil {
				t.Error("Encode read through the link")
			}
		})
	}
	t.Run("link inside the directory", func(t *testing.T) {
		m, tp := extModel(t)
		if err := os.Mkdir(filepath.Join(m.Dir, "real"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(m.Dir, "data.bin"), filepath.Join(m.Dir, "real", "data.bin")); err != nil {
			t.Fatal(err)
		}
		link(t, filepath.Join("real", "data.bin"), filepath.Join(m.Dir, "data.bin"))
		tp.ExternalData = []*onnxpb.StringStringEntryProto{{Key: proto.String("location"), Value: proto.String("data.bin")}, {Key: proto.String("length"), Value: proto.String("8")}}
		if v, err := m.Int64s(tp); err != nil || !equalInts(v, []int64{1, 1}) {
			t.Errorf("Int64s through a link inside the directory: %v, %v", v, err)
		}
		if err := Validate(m); err != nil {
			t.Errorf("Validate: %v", err)
		}
	})
	t.Run("model directory through a link", func(t *testing.T) {
		m, tp := extModel(t, "location", "data.bin", "length", "8")
		alias := filepath.Join(t.TempDir(), "alias")
		link(t, m.Dir, alias)
		m.Dir, m.Path = alias, filepath.Join(alias, "m.onnx")
		if _, err := m.RawData(tp); err != nil {
			t.Errorf("RawData with the model's directory reached through a link: %v", err)
		}
	})
}
