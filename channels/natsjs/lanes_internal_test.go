package natsjs

import (
	"slices"
	"testing"
)

func TestPlaceApart(t *testing.T) {
	all := []string{"n1", "n2", "n3"}
	for _, c := range []struct {
		name    string
		leaders [3]string
		live    []string
		want    []leaderMove
	}{
		{"apart already", [3]string{"n1", "n2", "n3"}, all, nil},
		{"spare on the inbound leader", [3]string{"n1", "n1", "n2"}, all, []leaderMove{{StreamInboundSpare, "n1", "n3"}}},
		{"bucket on the inbound leader", [3]string{"n2", "n3", "n2"}, all, []leaderMove{{"KV_" + KVRequests, "n2", "n1"}}},
		{"all on one", [3]string{"n3", "n3", "n3"}, all, []leaderMove{{StreamInboundSpare, "n3", "n1"}, {"KV_" + KVRequests, "n3", "n2"}}},
		{"two live servers: the spare leaves the inbound leader", [3]string{"n1", "n1", "n2"}, []string{"n1", "n2"}, []leaderMove{{StreamInboundSpare, "n1", "n2"}}},
		{"two live servers, spare apart: stays", [3]string{"n1", "n2", "n2"}, []string{"n1", "n2"}, nil},
		{"one live server: nothing to do", [3]string{"n1", "n1", "n1"}, []string{"n1"}, nil},
	} {
		var gs []groupLeader
		for i, name := range LeaderGroups {
			gs = append(gs, groupLeader{name: name, leader: c.leaders[i], current: c.live})
		}
		if got := placeApart(gs); !slices.Equal(got, c.want) {
			t.Errorf("%s: moves %v, want %v", c.name, got, c.want)
		}
	}
}
