package rewrite
import ("testing";"os";"github.com/onnx-cria/onnx-cria/onnxio")
func TestTmp(t *testing.T){
  m,err:=onnxio.Load(os.Getenv("M")); if err!=nil{t.Fatal(err)}
  a,err:=Analyze(m,Options{}); if err!=nil{t.Fatal(err)}
  for _,g:=range a.Groups{ t.Logf("%s kind=%s w=%d ppu=%d blocked=%v warn=%d obs=%+v src=%v", g.Name,g.Kind,g.Width,g.ParamsPerUnit,g.Blocked,len(g.Warnings),g.Observe,g.Sources) }
  for _,s:=range a.Skipped{t.Log("skipped",s)}
  plan:=Plan{}
  for _,g:=range a.Prunable(){ plan[g.Name]=[]int{0} }
  pa,err:=a.ParamsAfter(plan); if err!=nil{t.Fatal(err)}
  m2,err:=a.Apply(plan); if err!=nil{t.Fatal(err)}
  c,_:=m2.ParamCount(); c0,_:=m.ParamCount()
  t.Log(c0, pa, c)
}
