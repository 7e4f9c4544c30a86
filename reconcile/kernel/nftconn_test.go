package kernel

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	r "netlab/reconcile"
)

// TestNftConnOneTransactionAtATime: two users of a namespace's nftables
// connection at once (Docker's ip and ip6 tables are written by two actions of
// one phase) each get their own transaction and their own error: a good batch
// never fails because of another's bad one, and a bad one never passes
// because another's Flush sent it.
func TestNftConnOneTransactionAtATime(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	var wg sync.WaitGroup
	var goodFailed, badPassed atomic.Int32
	// transact runs one transaction on the shared connection, in a goroutine
	// of its own, and counts it when Flush's answer is not the one it expects.
	transact := func(fill func(*nftables.Conn), wantErr bool, wrong *atomic.Int32) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, done, err := d.nftConn(r.Host)
			if err != nil {
				t.Error(err)
				return
			}
			defer done()
			fill(conn)
			if (conn.Flush() != nil) != wantErr {
				wrong.Add(1)
			}
		}()
	}
	for range 30 {
		transact(func(conn *nftables.Conn) {
			table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "good"})
			conn.AddChain(&nftables.Chain{Name: "c", Table: table})
		}, false, &goodFailed)
		transact(func(conn *nftables.Conn) {
			table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "bad"})
			conn.AddRule(&nftables.Rule{Table: table, Chain: &nftables.Chain{Name: "no-such-chain", Table: table}, Exprs: []expr.Any{&expr.Counter{}}})
		}, true, &badPassed)
	}
	wg.Wait()
	if goodFailed.Load() != 0 || badPassed.Load() != 0 {
		t.Errorf("of 30 each: %d good transactions failed, %d bad ones passed", goodFailed.Load(), badPassed.Load())
	}
}
