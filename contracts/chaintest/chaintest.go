// Package chaintest runs go-ethereum's simulated backend with the Livepeer
// stand-in contracts deployed, a miner committing blocks, and JSON-RPC served
// over HTTP on loopback, so tests can hand binaries a real -eth.url.
package chaintest

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/params"

	"github.com/lpgauge/lpgauge/contracts"
)

// ChainID is the simulated backend's chain id.
const ChainID = 1337

// Chain is a running simulated chain.
type Chain struct {
	Sim   *simulated.Backend
	L     *contracts.Livepeer // bound through Sim's in-process client
	Owner *ecdsa.PrivateKey   // deployed the contracts; registers orchestrators
	URL   string              // JSON-RPC over HTTP
}

// New starts a chain where Owner holds 1000 ETH and each key 100 ETH, with
// the contracts deployed and round 1 initialized. It stops when t ends.
func New(t testing.TB, keys ...*ecdsa.PrivateKey) *Chain {
	t.Helper()
	owner, _ := crypto.GenerateKey()
	alloc := types.GenesisAlloc{crypto.PubkeyToAddress(owner.PublicKey): {Balance: new(big.Int).Mul(big.NewInt(1000), big.NewInt(params.Ether))}}
	for _, k := range keys {
		alloc[crypto.PubkeyToAddress(k.PublicKey)] = types.Account{Balance: new(big.Int).Mul(big.NewInt(100), big.NewInt(params.Ether))}
	}
	var sim *simulated.Backend
	var url string
	var err error
	// The node takes a fixed port; another process may grab the free one
	// we found before the node binds it, so try a few.
	for attempt := 0; attempt < 5 && sim == nil; attempt++ {
		sim, url, err = start(alloc)
	}
	if sim == nil {
		t.Fatalf("simulated chain with HTTP JSON-RPC: %v", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the miner
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sim.Commit()
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait(); _ = sim.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	L, err := contracts.Deploy(ctx, sim.Client(), big.NewInt(ChainID), owner)
	if err != nil {
		t.Fatal(err)
	}
	if err := L.InitializeRound(ctx, owner); err != nil {
		t.Fatal(err)
	}
	return &Chain{Sim: sim, L: L, Owner: owner, URL: url}
}

func start(alloc types.GenesisAlloc) (sim *simulated.Backend, url string, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	defer func() {
		if r := recover(); r != nil { // NewBackend panics when the node cannot start
			sim, err = nil, fmt.Errorf("start node: %v", r)
		}
	}()
	sim = simulated.NewBackend(alloc, func(nc *node.Config, _ *ethconfig.Config) {
		nc.HTTPHost = "127.0.0.1"
		nc.HTTPPort = port
		nc.HTTPModules = []string{"eth", "net", "web3"}
	})
	return sim, fmt.Sprintf("http://127.0.0.1:%d", port), nil
}

// Register puts key's orchestrator in the pool with uri as its service URI.
func (c *Chain) Register(t testing.TB, key *ecdsa.PrivateKey, uri string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.L.RegisterTranscoder(ctx, c.Owner, crypto.PubkeyToAddress(key.PublicKey), big.NewInt(1e18)); err != nil {
		t.Fatal(err)
	}
	if err := c.L.SetServiceURI(ctx, key, uri); err != nil {
		t.Fatal(err)
	}
}

// Balance is addr's ETH balance now.
func (c *Chain) Balance(t testing.TB, key *ecdsa.PrivateKey) *big.Int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := c.Sim.Client().BalanceAt(ctx, crypto.PubkeyToAddress(key.PublicKey), nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
