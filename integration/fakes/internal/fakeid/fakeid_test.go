package fakeid

import (
	"regexp"
	"testing"
)

func TestGUID(t *testing.T) {
	shape := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := GUID("org/o1"), GUID("org/o2")
	for _, g := range []string{a, b} {
		if !shape.MatchString(g) {
			t.Errorf("GUID = %q, not a version 4 GUID", g)
		}
	}
	if a == b {
		t.Errorf("GUID gave %q for two names", a)
	}
	if again := GUID("org/o1"); again != a {
		t.Errorf("GUID(org/o1) = %q then %q, want stable", a, again)
	}
}
