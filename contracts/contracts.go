// Package contracts holds small Solidity stand-ins for the Livepeer contracts
// the project calls (BondingManager pool walk, ServiceRegistry, RoundsManager,
// TicketBroker), their ABI and bytecode (built by build.sh), and Go bindings
// written against go-ethereum's accounts/abi. The function signatures match
// Livepeer's, so the same bindings read Arbitrum One in production.
package contracts

import (
	"context"
	"crypto/ecdsa"
	_ "embed"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

var (
	//go:embed build/BondingManager.abi
	bondingManagerABI string
	//go:embed build/BondingManager.bin
	bondingManagerBin string
	//go:embed build/ServiceRegistry.abi
	serviceRegistryABI string
	//go:embed build/ServiceRegistry.bin
	serviceRegistryBin string
	//go:embed build/RoundsManager.abi
	roundsManagerABI string
	//go:embed build/RoundsManager.bin
	roundsManagerBin string
	//go:embed build/TicketBroker.abi
	ticketBrokerABI string
	//go:embed build/TicketBroker.bin
	ticketBrokerBin string
)

// CallTimeout bounds a chain call whose context has no deadline.
const CallTimeout = 10 * time.Second

// ErrReverted means a transaction was mined but failed.
var ErrReverted = errors.New("transaction reverted")

// Backend is a chain connection: an ethclient.Client or the simulated
// backend's client.
type Backend interface {
	bind.ContractBackend
	bind.DeployBackend
	BlockNumber(ctx context.Context) (uint64, error)
	BalanceAt(ctx context.Context, account common.Address, block *big.Int) (*big.Int, error)
}

// Addresses locate the four contracts.
type Addresses struct {
	BondingManager, ServiceRegistry, RoundsManager, TicketBroker common.Address
}

// Contract is one bound contract with its ABI.
type Contract struct {
	abi abi.ABI
	c   *bind.BoundContract
}

func bound(b Backend, addr common.Address, abiJSON string) (*Contract, error) {
	a, err := abi.JSON(strings.NewReader(abiJSON))
	if err != nil {
		return nil, fmt.Errorf("parse ABI: %w", err)
	}
	return &Contract{abi: a, c: bind.NewBoundContract(addr, a, b, b, b)}, nil
}

// Address is the contract's address.
func (c *Contract) Address() common.Address { return c.c.Address() }

func withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, CallTimeout)
}

// Call runs a view method and returns its outputs.
func (c *Contract) Call(ctx context.Context, method string, args ...any) ([]any, error) {
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	data, err := c.abi.Pack(method, args...)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", method, err)
	}
	out, err := c.c.CallRaw(&bind.CallOpts{Context: ctx}, data)
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", method, err)
	}
	res, err := c.abi.Unpack(method, out)
	if err != nil {
		return nil, fmt.Errorf("unpack %s: %w", method, err)
	}
	return res, nil
}

// Transact sends a transaction calling method; it does not wait for mining.
func (c *Contract) Transact(ctx context.Context, opts *bind.TransactOpts, method string, args ...any) (*types.Transaction, error) {
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	data, err := c.abi.Pack(method, args...)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", method, err)
	}
	o := *opts
	o.Context = ctx
	tx, err := c.c.RawTransact(&o, data)
	if err != nil {
		return nil, fmt.Errorf("transact %s: %w", method, err)
	}
	return tx, nil
}

// Livepeer is the set of contracts the project uses.
type Livepeer struct {
	Backend         Backend
	ChainID         *big.Int
	BondingManager  *Contract
	ServiceRegistry *Contract
	RoundsManager   *Contract
	TicketBroker    *Contract
}

// New binds deployed contracts.
func New(b Backend, chainID *big.Int, a Addresses) (*Livepeer, error) {
	l := &Livepeer{Backend: b, ChainID: chainID}
	var err error
	if l.BondingManager, err = bound(b, a.BondingManager, bondingManagerABI); err != nil {
		return nil, err
	}
	if l.ServiceRegistry, err = bound(b, a.ServiceRegistry, serviceRegistryABI); err != nil {
		return nil, err
	}
	if l.RoundsManager, err = bound(b, a.RoundsManager, roundsManagerABI); err != nil {
		return nil, err
	}
	if l.TicketBroker, err = bound(b, a.TicketBroker, ticketBrokerABI); err != nil {
		return nil, err
	}
	return l, nil
}

// Addresses of the bound contracts.
func (l *Livepeer) Addresses() Addresses {
	return Addresses{l.BondingManager.Address(), l.ServiceRegistry.Address(), l.RoundsManager.Address(), l.TicketBroker.Address()}
}

// Opts are transaction options for key.
func (l *Livepeer) Opts(key *ecdsa.PrivateKey) *bind.TransactOpts {
	return bind.NewKeyedTransactor(key, l.ChainID)
}

// Wait waits for tx to be mined and fails if it reverted.
func (l *Livepeer) Wait(ctx context.Context, tx *types.Transaction) error {
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	r, err := bind.WaitMined(ctx, l.Backend, tx.Hash())
	if err != nil {
		return fmt.Errorf("wait for %s: %w", tx.Hash().Hex(), err)
	}
	if r.Status != types.ReceiptStatusSuccessful {
		return fmt.Errorf("%w: %s", ErrReverted, tx.Hash().Hex())
	}
	return nil
}

// Deploy deploys the four test contracts from key; something must be mining
// (the simulated backend's Commit) for it to return.
func Deploy(ctx context.Context, b Backend, chainID *big.Int, key *ecdsa.PrivateKey) (*Livepeer, error) {
	opts := bind.NewKeyedTransactor(key, chainID)
	opts.Context = ctx
	var a Addresses
	for _, d := range []struct {
		bin  string
		addr *common.Address
	}{
		{bondingManagerBin, &a.BondingManager}, {serviceRegistryBin, &a.ServiceRegistry},
		{roundsManagerBin, &a.RoundsManager}, {ticketBrokerBin, &a.TicketBroker},
	} {
		addr, tx, err := bind.DeployContract(opts, common.FromHex(strings.TrimSpace(d.bin)), b, nil)
		if err != nil {
			return nil, fmt.Errorf("deploy: %w", err)
		}
		wctx, cancel := withDeadline(ctx)
		_, err = bind.WaitDeployed(wctx, b, tx.Hash())
		cancel()
		if err != nil {
			return nil, fmt.Errorf("wait deployed: %w", err)
		}
		*d.addr = addr
	}
	return New(b, chainID, a)
}
