package capability

import (
	"slices"
	"testing"
)

func TestBitstring(t *testing.T) {
	tests := []struct {
		name string
		ids  []ID
		want []uint64
	}{
		{"none", nil, nil},
		{"text to image is bit 27 of word 0", []ID{TextToImage}, []uint64{1 << 27}},
		{"all batch AI", []ID{27, 28, 29, 30, 31, 32, 33, 34, 36}, []uint64{0b1_0111_1111_1 << 27}},
		{"id 64 opens word 1", []ID{0, 64}, []uint64{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Bitstring(tt.ids...)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Bitstring(%v) = %b, want %b", tt.ids, got, tt.want)
			}
			for _, id := range tt.ids {
				if !Has(got, id) {
					t.Errorf("Has(%d) = false", id)
				}
			}
			if !slices.Equal(IDs(got), tt.ids) && len(tt.ids) > 0 {
				t.Errorf("IDs = %v", IDs(got))
			}
		})
	}
	if Has(Bitstring(TextToImage), LLM) {
		t.Error("LLM reported in a text-to-image bitstring")
	}
	if !Covers(Bitstring(27, 33), Bitstring(33)) || Covers(Bitstring(27), Bitstring(27, 33)) || Covers(nil, []uint64{0, 1}) {
		t.Error("Covers wrong")
	}
}
