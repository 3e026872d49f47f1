package gateway

import "math/big"

func bigInt(b []byte) *big.Int { return new(big.Int).SetBytes(b) }
