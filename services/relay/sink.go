package relay

import (
	"gatehouse/collector"
	"gatehouse/mailmsg"
	"gatehouse/queue"
)

// sink is the relay's side of the collector: collected mail is routed by
// the running policy and queued in the relay's queue, its account and
// remote id its de-duplication key.
type sink struct{ s *Service }

func (k sink) Route(to mailmsg.Address) queue.Route { return k.s.policy().RouteFor(to) }

func (k sink) Queue(msgs []queue.Incoming) error { return k.s.q.AddBatch(msgs) }

func (k sink) Seen(account string) (map[string]bool, error) { return k.s.store.Seen(account) }

func (k sink) Forget(account string, keep func(id string) bool) error {
	return k.s.store.PruneSeen(account, keep)
}

// collectorSettings is what the collector takes from the running config.
func (s *Service) collectorSettings() collector.Settings {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return collector.Settings{Hostname: s.cfg.Hostname, MaxSize: s.cfg.Limits.MessageSize.Bytes, Roots: s.pool}
}
