package sim

import "testing"

func TestZZDebugShip(t *testing.T) {
	w, err := NewReplicaWorld(ReplicaWorldConfig{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, s := range []func() error{func() error { return w.Push(5) }, w.Round, w.Round, func() error { return w.Maintain(false) }, w.Round, w.Round} {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
	t.Log(w.Trace.Tail(60))
}
