package cpython_test

import (
	"testing"

	"github.com/pyglass/pyglass/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
