package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultMinFreeBytes is the free space below which the data dir's file
// system counts as full. etcd preallocates its WAL in 64 MiB segments and
// stops fatally when a write fails, so writes are refused well before that.
const DefaultMinFreeBytes = 128 << 20

// diskGuardInterval is how often free space is checked.
const diskGuardInterval = 2 * time.Second

// guardDisk raises etcd's NOSPACE alarm while the data dir's file system has
// less than MinFreeBytes free, and clears it (only the alarm it raised) when
// space returns. Under the alarm etcd refuses every write with "etcdserver:
// mvcc: database space exceeded" but keeps serving reads, so the API stays up
// and nothing is half-written; without it etcd would exit on the first write
// that hits a full disk.
func (p *Processes) guardDisk(pt ports, c *certs) {
	cli, err := etcdClient(pt, c)
	if err != nil {
		p.cfg.Log.Error(err, "Disk guard not running: cannot reach etcd")
		return
	}
	defer cli.Close()
	// raised: the disk is low and writes are refused; owned: by our alarm,
	// not etcd's own quota alarm, which only etcd's operator may clear.
	raised, owned := false, false
	tick := time.NewTicker(diskGuardInterval)
	defer tick.Stop()
	for {
		free, err := freeBytes(p.cfg.DataDir)
		if err == nil {
			low := free < uint64(p.cfg.MinFreeBytes)
			if low != raised {
				if low {
					owned, err = raiseNoSpace(cli)
				} else if owned {
					err = clearNoSpace(cli)
				}
				if err != nil {
					p.cfg.Log.Error(err, "Changing etcd's NOSPACE alarm", "raise", low)
				} else if raised = low; raised {
					p.cfg.Log.Error(nil, "Data dir disk nearly full: the API refuses writes (\"database space exceeded\") until space is freed", "dataDir", p.cfg.DataDir, "freeMiB", free>>20, "minFreeMiB", p.cfg.MinFreeBytes>>20)
				} else if owned {
					p.cfg.Log.Info("Data dir disk has space again: writes accepted", "dataDir", p.cfg.DataDir, "freeMiB", free>>20)
				} else {
					p.cfg.Log.Info("Data dir disk has space again; etcd's own NOSPACE alarm (database over its quota) stays raised", "dataDir", p.cfg.DataDir, "freeMiB", free>>20)
				}
			}
		}
		select {
		case <-p.stopped:
			return
		case <-tick.C:
		}
	}
}

func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// raiseNoSpace raises the NOSPACE alarm unless it is already raised, and
// says whether it raised it.
func raiseNoSpace(cli *clientv3.Client) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alarms, err := cli.AlarmList(ctx)
	if err != nil {
		return false, err
	}
	for _, a := range alarms.Alarms {
		if a.Alarm == pb.AlarmType_NOSPACE {
			return false, nil
		}
	}
	return true, noSpaceAlarm(ctx, cli, pb.AlarmRequest_ACTIVATE)
}

func clearNoSpace(cli *clientv3.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return noSpaceAlarm(ctx, cli, pb.AlarmRequest_DEACTIVATE)
}

func noSpaceAlarm(ctx context.Context, cli *clientv3.Client, action pb.AlarmRequest_AlarmAction) error {
	st, err := cli.Status(ctx, cli.Endpoints()[0])
	if err != nil {
		return err
	}
	// clientv3 only disarms alarms; the raw API also raises them.
	_, err = pb.NewMaintenanceClient(cli.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{Action: action, MemberID: st.Header.MemberId, Alarm: pb.AlarmType_NOSPACE})
	return err
}

func etcdClient(pt ports, c *certs) (*clientv3.Client, error) {
	cert, err := tls.X509KeyPair(c.apiserverEtcd.CertPEM, c.apiserverEtcd.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.etcdCA.Cert)
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{"https://" + hostPort("127.0.0.1", pt.EtcdClient)},
		DialTimeout: 10 * time.Second,
		TLS:         &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12},
		Logger:      zap.NewNop(),
	})
}
