"""How people ask for each intent, in English and Chinese: what a question is matched against.

Written for this project, not taken from the labelled questions (models/data/ask-questions.jsonl
holds a held-out test split that must stay unseen). Names of hosts, services and times are left
out or generic: slots are filled separately (exporter/assistant/slots.py), and a phrasing that
named `web-01` would pull every question naming it toward one intent.

The table is text, one intent per block, phrasings separated by `|`, so ~300 phrasings stay
readable in one screenful per intent.
"""

from __future__ import annotations

from collections.abc import Mapping

_TABLE = """
[top_cpu_hosts]
en: which hosts have the highest CPU usage | top 5 servers by CPU
en: which machines are busiest on CPU
en: show the servers with the most CPU load | what servers are using too much CPU
zh: 哪些服务器 CPU 使用率最高 | CPU 使用率前五的主机 | 哪台机器的 CPU 最忙
zh: 哪些主机 CPU 使用率过高
zh: 列出 CPU 占用最高的服务器
en: which boxes are pegged on cpu | who is eating the most CPU among the hosts
en: hottest machines by processor usage
zh: 帮我看看哪几台机器 CPU 最高 | CPU 跑满的服务器有哪些 | 主机 CPU 排行

[top_memory_hosts]
en: which hosts use the most memory | top servers by memory usage
en: which machines are running out of RAM
en: show the servers with the highest memory utilisation | list hosts with high memory usage
zh: 哪些服务器内存使用率最高 | 内存占用前五的主机 | 哪台机器内存快用完了
zh: 内存使用最多的服务器有哪些
zh: 列出内存使用率高的主机
en: which hosts are short on memory | biggest memory consumers among servers
en: which servers have the least free RAM
zh: 哪些机器内存不够了 | 内存排行前几的服务器 | 哪台主机可用内存最少

[top_disk_usage]
en: which filesystems are the fullest | top disks by usage | which hosts are low on disk space
en: show the most used file systems | which partitions are almost full
zh: 哪些磁盘快满了 | 磁盘使用率最高的文件系统 | 哪些分区空间不足 | 列出磁盘占用前五的挂载点
zh: 哪些服务器磁盘空间紧张
en: which mount points are nearly out of space | fullest disks across the fleet
en: disk usage ranking
zh: 哪些挂载点快没空间了 | 磁盘占用排行 | 哪台机器的磁盘最满

[host_cpu]
en: what is the CPU usage of this host | how busy is the CPU on server
en: show CPU utilisation for the machine
en: CPU load of host | how much CPU is the server using
zh: 这台主机的 CPU 使用率是多少 | 服务器的 CPU 使用情况 | 查看机器的 CPU 利用率 | 主机 CPU 忙不忙
zh: 看一下这台服务器的 CPU
en: is the CPU on this box high | check processor usage of the machine | cpu utilization for node
zh: 帮忙查一下这台机器 cpu 高不高 | 主机的 CPU 负载怎么样 | 服务器处理器使用率

[host_memory]
en: how much memory is this host using | memory usage of server
en: show RAM utilisation of the machine
en: how much free memory does the host have | memory of host
zh: 这台主机的内存使用率是多少 | 服务器内存还剩多少 | 查看机器的内存使用情况 | 主机可用内存
zh: 看一下这台服务器的内存
en: is this server running low on RAM | check the memory of the box | how much RAM is free on host
zh: 这台机器内存够不够 | 服务器的内存还剩多少 | 主机内存占用多少

[host_disk]
en: how much disk space is left on this host | disk usage of server
en: show the filesystems of the machine
en: is the disk of host full | free disk space on server
zh: 这台主机的磁盘还剩多少空间 | 服务器的磁盘使用情况 | 查看机器的磁盘空间 | 主机磁盘满了吗
zh: 看一下这台服务器的硬盘 | 这台机器的硬盘使用率
en: how full are the disks on this server | how much free space does the machine have
en: check the disk of host
zh: 这台机器的磁盘快满了吗 | 服务器硬盘还剩多少空间 | 查一下主机的磁盘

[host_load]
en: what is the load average | show the system load of the hosts | load average of the server
en: which machines have a high load | what is the 1 minute load
zh: 服务器的负载是多少 | 查看主机的系统负载 | 机器的 load average | 哪些主机负载高
zh: 服务器的平均负载
en: what is the load on this box | system load of the servers | is the load average high
zh: 这台机器负载高吗 | 主机的 load 多少 | 系统负载情况

[host_network]
en: how much network traffic is the host sending and receiving | network throughput of servers
en: show bytes in and out on the network interfaces | bandwidth usage of the machine
en: network I/O of host
zh: 主机的网络流量是多少 | 服务器的网卡进出流量 | 查看机器的带宽使用 | 网络吞吐量
zh: 服务器收发了多少网络数据
en: how much bandwidth is the server using | network receive and transmit rates
en: inbound and outbound traffic of hosts
zh: 服务器的入流量和出流量 | 网卡带宽用了多少 | 主机网络收发速率

[host_uptime]
en: how long has the host been up | when did the server last reboot
en: which machines rebooted recently
en: show the uptime of the servers | did any host restart
zh: 主机运行了多久 | 服务器上次重启是什么时候 | 哪些机器最近重启过 | 查看服务器的开机时间
zh: 有没有主机重启了
en: when was the machine last restarted | how long since the host booted
en: has any server rebooted today
zh: 机器开机多久了 | 服务器什么时候重启的 | 主机的运行时间

[targets_down]
en: which scrape targets are down | which exporters are not responding
en: what targets are unreachable
en: list the targets where up is 0 | is any target down
zh: 哪些采集目标挂了 | 哪些 exporter 没有响应 | 哪些监控目标不可达 | 有没有 target 宕机
zh: 列出 up 为 0 的目标
en: anything with up == 0 | which endpoints are failing to scrape
en: what monitoring targets are down
zh: 哪些抓取目标是 down 的 | 有没有 exporter 挂掉 | 哪些 target 采集失败

[disk_fill_forecast]
en: which disks will fill up soon | when will the disk be full
en: which filesystems are going to run out of space
en: predict disk full | disks filling up in the next hours
zh: 哪些磁盘快要写满了 | 磁盘什么时候会满 | 预测哪些文件系统空间会耗尽 | 哪些分区即将用完
zh: 磁盘写满预测
en: will any disk run out of space soon | which volumes are predicted to fill
en: disks that will be full within hours
zh: 哪些磁盘预计很快写满 | 未来会写满的磁盘 | 磁盘空间什么时候耗尽

[error_rate_by_service]
en: what is the error rate per service | which services return 5xx errors
en: show the HTTP error ratio by service
en: how many requests are failing | which service has the most errors
zh: 各服务的错误率是多少 | 哪些服务返回了 5xx 错误 | 按服务查看 HTTP 错误率 | 服务的失败请求比例
zh: 哪个服务报错最多
en: 5xx ratio per service | how many errors is the service returning
en: percentage of failed requests by service
zh: 服务的 5xx 比例 | 各服务报错率 | 服务错误请求占比

[request_rate_by_service]
en: how much traffic does each service get | requests per second by service
en: what is the request rate
en: show QPS per service | how busy is the service in requests
zh: 各服务的请求量是多少 | 每个服务的 QPS | 服务每秒请求数 | 查看服务的流量
zh: 哪个服务请求最多
en: how many requests per second is the service handling | traffic by service
en: request volume per service
zh: 服务的流量多大 | 各服务每秒请求量 | 服务请求数排行

[latency_by_service]
en: what is the p99 latency per service | how slow are the services
en: show response time by service
en: p95 latency of the service | which service has the highest latency
zh: 各服务的 p99 延迟是多少 | 服务响应时间 | 哪个服务最慢 | 查看服务的 p95 延迟
zh: 服务的接口耗时
en: how long do requests take | is the service slow | p99 response times
zh: 服务慢不慢 | 请求耗时多少 | 各服务的响应延迟

[service_availability]
en: what is the availability of the service | success ratio of service
en: is the service meeting its SLO
en: what percentage of requests succeed for the service | uptime of the service in requests
zh: 服务的可用性是多少 | 服务的成功率 | 服务的 SLA 达标了吗 | 请求成功的比例是多少
zh: 这个服务的可用率
en: what fraction of requests to the service succeed | is the service available
en: success rate of the service
zh: 服务的成功率是多少 | 服务可用吗 | 这个服务的请求成功率

[top_pod_cpu]
en: which pods use the most CPU | top containers by CPU | which containers are busiest
en: show pod CPU usage | list the pods with high CPU
zh: 哪些 Pod 的 CPU 使用最高 | CPU 占用最多的容器 | 容器 CPU 使用排行 | 列出 CPU 高的 Pod
zh: 哪个容器最耗 CPU
en: which containers burn the most CPU | cpu hungry pods | top pods by cpu in the namespace
zh: 哪些 pod 最吃 CPU | 命名空间里 CPU 最高的容器 | pod 的 CPU 排行

[top_pod_memory]
en: which pods use the most memory | top containers by memory | which pods consume the most RAM
en: show pod memory usage | list containers with high memory
zh: 哪些 Pod 内存占用最多 | 内存使用最多的容器 | 容器内存排行 | 列出内存高的 Pod
zh: 哪个容器最耗内存
en: memory hungry pods | which containers use the most RAM in the namespace | top pods by memory
zh: 哪些 pod 最吃内存 | 命名空间里内存最高的容器 | pod 内存占用排行

[pod_restarts]
en: which pods are restarting | pods with the most restarts | which containers keep crashing
en: show container restart counts | any pods in crash loop
zh: 哪些 Pod 在重启 | 重启次数最多的 Pod | 哪些容器一直崩溃 | 查看容器重启次数
zh: 有没有 Pod 在 CrashLoop
en: which pods restarted recently | pods in crashloopbackoff
en: how many times did containers restart
zh: 最近哪些 pod 重启了 | 容器重启了几次 | 哪些 pod 在 CrashLoopBackOff

[pods_not_ready]
en: which pods are not ready | pods stuck in pending | which pods failed
en: list pods that are not running | are there unhealthy pods
zh: 哪些 Pod 没有就绪 | 处于 Pending 的 Pod | 哪些 Pod 失败了 | 列出没在运行的 Pod
zh: 有没有不健康的 Pod
en: any failed or pending pods | pods that are not running
en: which pods are unhealthy in the namespace
zh: 有没有 pending 或失败的 pod | 哪些 pod 不是 Running | 命名空间里没就绪的 pod

[deployments_unavailable]
en: which deployments are missing replicas | deployments with unavailable replicas
en: which deployments are not fully rolled out
en: show deployments where available replicas are fewer than desired | any deployment degraded
zh: 哪些 Deployment 副本不足 | 有不可用副本的部署 | 哪些 Deployment 没有全部就绪
zh: 副本数不够的部署
zh: 哪些部署降级了
en: deployments with fewer ready replicas than desired | which deployments are not fully available
en: replicas missing in deployments
zh: 哪些 deployment 可用副本不够 | 部署的副本缺了 | 副本没有全部就绪的 deployment

[oom_killed]
en: which containers were OOM killed | any out of memory kills
en: which pods ran out of memory and were killed
en: show OOMKilled containers | list containers terminated for memory
zh: 哪些容器被 OOM 杀掉了 | 有没有内存溢出被杀的容器 | 哪些 Pod 因为内存不足被终止
zh: 查看 OOMKilled 的容器
zh: 最近有没有 OOM
en: which containers got OOMKilled | out of memory terminations
en: containers killed by the oom killer
zh: 哪些容器 OOM 了 | 被 OOMKilled 的 pod | 内存超限被杀的容器

[cpu_throttling]
en: which containers are CPU throttled | pods hitting their CPU limit | show CPU throttling
en: which containers are being throttled | throttled CPU periods by pod
zh: 哪些容器 CPU 被限流 | 哪些 Pod 触达了 CPU 限制 | 查看 CPU 节流情况 | 容器 CPU throttling
zh: 哪些容器被限制了 CPU
en: are containers getting throttled | cpu throttling per pod | which pods hit their cpu limits
zh: 容器 CPU 被节流了吗 | 哪些 pod 被 throttle | CPU 限额导致限流的容器

[nodes_not_ready]
en: which Kubernetes nodes are not ready | nodes under memory or disk pressure | any node NotReady
en: show the status of the cluster nodes | which k8s nodes are unhealthy
zh: 哪些 Kubernetes 节点没有就绪 | 哪些节点有内存或磁盘压力 | 有没有 NotReady 的节点
zh: 集群节点状态
zh: 哪些 k8s 节点不健康
en: are all k8s nodes ready | nodes with disk pressure or memory pressure
en: which cluster nodes are NotReady
zh: k8s 节点都 ready 吗 | 有压力的节点 | 集群里哪些节点不可用

[anomalous_now]
en: what is anomalous right now | which series does augur find unusual | show current anomalies
en: is anything behaving strangely now | what looks abnormal at the moment
zh: 现在有什么异常 | 当前哪些指标异常 | 显示现在的异常 | 有没有什么不正常的
zh: augur 现在发现了哪些异常
en: anything weird going on right now | what is unusual at the moment
en: which metrics are abnormal now
zh: 现在有什么不对劲的 | 当前有异常的指标吗 | 此刻哪些序列异常

[anomalies_in_range]
en: what was anomalous during the period | which anomalies happened in that time
en: show anomalies over the last hours
en: list the anomalies of the past day | what went abnormal during that window
zh: 这段时间有哪些异常 | 过去发生了哪些异常 | 显示一段时间内的异常 | 列出期间的异常指标
zh: 那段时间出现过什么异常
en: what anomalies did we have in the last day | anomalies during the past hours
en: which series were anomalous over the period
zh: 过去几个小时有哪些异常 | 今天出现过什么异常 | 这段时间内的异常序列

[open_incidents]
en: which incidents are open | what incidents is augur tracking now | show the open incidents
en: are there any ongoing incidents | list current incidents
zh: 现在有哪些未关闭的事件 | 当前有哪些故障事件 | 显示正在进行的事件 | 有没有未恢复的故障
zh: 列出当前的 incident
en: what incidents are still open | ongoing incidents right now | unresolved incidents
zh: 还有哪些事件没有解决 | 当前未结束的故障 | 正在处理的事件

[forecast_of]
en: where is this series heading | what is the forecast | show the predicted values
en: what will the metric be in a few hours | forecast for the host
zh: 这个指标的趋势预测 | 预测值是多少 | 显示预测结果 | 接下来几个小时会怎么变化
zh: 主机的预测趋势
en: what is augur forecasting | predicted trend of the metric | where is the series going
zh: augur 的预测值 | 指标未来走势 | 预测的趋势是什么

[alerts_firing]
en: which alerts are firing now | what alerts are active | show the current alerts
en: are there any firing alerts | list active alerts
zh: 现在有哪些告警 | 当前正在触发的告警 | 显示活跃的告警 | 有没有告警在响
zh: 列出正在告警的规则
en: what alerts are firing right now | is anything alerting | which alerts are currently active
zh: 现在在响的告警 | 当前触发中的告警有哪些 | 有告警正在触发吗

[alerts_fired_in_range]
en: which alerts fired during the period | what alerts went off today
en: show the alerts of the last day
en: how many alerts fired in that time | list the alerts triggered recently
zh: 今天触发了哪些告警 | 这段时间有哪些告警 | 过去一天的告警 | 最近触发过的告警有哪些
zh: 期间响过哪些告警
en: what alerts fired today | alerts triggered over the past hours
en: which alerts went off during the period and what kinds
zh: 今天响过哪些告警 | 过去几小时触发的告警 | 这段时间报过哪些警

[alerts_by_category]
en: alerts by category | what kinds of alerts did augur enrich
en: break down the enriched alerts by category
en: which categories do the alerts fall into | count alerts per category
zh: 按类别统计告警 | 告警都属于哪些类别 | augur 富化的告警分类 | 各类告警有多少
zh: 告警的分类统计
en: how many alerts per category | alert categories breakdown
en: enriched alerts grouped by category
zh: 告警按类别分布 | 各个类别的告警数量 | 告警分类汇总

[changed_around]
en: what changed around that time | what was different then | which metrics moved at that moment
en: what happened around the time | show what changed before the outage
zh: 那个时间点前后有什么变化 | 当时发生了什么 | 那时候哪些指标变了 | 那个时刻附近有什么异常变化
zh: 那时候有什么改变
en: what changed at that time | what moved right before the incident
en: which metrics changed around then
zh: 那个时间点哪些指标变了 | 事发前后有什么变化 | 当时哪些指标突然变化

[related_anomalies]
en: what anomalies are related to the alert | what else was wrong when the alert fired
en: related anomalies for the alert
en: what did augur find related to this alert | show anomalies linked to the alert
zh: 和这个告警相关的异常有哪些 | 告警触发时还有什么异常 | 这个告警的关联异常
zh: augur 为这个告警找到了什么相关异常
zh: 告警的根因线索
en: which anomalies are linked to the alert | root cause hints for the alert
en: what else was abnormal when the alert fired
zh: 告警相关的异常指标 | 这个告警触发时还有哪些指标异常 | 告警关联到哪些异常

[augur_status]
en: is augur working | is augur polling | how many series does augur score
en: is augur still warming up | what is the status of augur
zh: augur 正常工作吗 | augur 在轮询吗 | augur 评分了多少序列 | augur 还在预热吗
zh: augur 的运行状态
en: is augur up and scoring | how many series is augur watching | is augur healthy
zh: augur 在工作吗 | augur 监控了多少序列 | augur 状态正常吗

[scrape_health]
en: how healthy are the scrapes | targets per job | how long do scrapes take
en: show scrape durations by job | how many targets does each job have
zh: 采集的健康状况 | 每个 job 有多少个目标 | 采集耗时多久 | 按 job 查看抓取时长
zh: 抓取是否正常
en: how long are scrapes taking per job | scrape duration and targets by job
en: are the scrapes healthy
zh: 各 job 的抓取耗时 | 每个 job 的 target 数量 | 采集是否健康
"""

_OUT_OF_SCOPE = """
[none]
en: what is the weather tomorrow | who is on call this weekend
en: how do I add a scrape target to Prometheus
en: tell me a joke | write a PromQL tutorial | how to install Grafana | what time is the meeting
zh: 明天天气怎么样 | 这周末谁值班 | 怎么配置 Prometheus 的抓取目标 | 讲个笑话
zh: 如何安装 Grafana | 会议几点开始 | 帮我写一个告警规则
en: silence this alert for an hour | mute the alert | acknowledge the alert
en: restart the pod | please reboot that server | restart the service
en: scale the deployment up to 5 replicas | roll back the last release | undo the deploy
en: write a report for my manager | send an email to the team | open a ticket | delete old pods
zh: 把这个告警静音一小时 | 屏蔽这条告警 | 确认这个告警
zh: 帮我重启这个 pod | 重启一下服务器 | 把服务重启一下
zh: 把副本数调到 5 个 | 回滚上一次发布 | 撤销这次部署
zh: 帮我写一份周报 | 给团队发封邮件 | 提个工单 | 删掉旧的 pod
"""


def _parse(table: str) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in table.strip().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = out.setdefault(line[1:-1], {"en": [], "zh": []})
        elif line and current is not None:
            lang, _, texts = line.partition(":")
            current[lang.strip()].extend(t.strip() for t in texts.split("|") if t.strip())
    return out


PHRASINGS: Mapping[str, Mapping[str, list[str]]] = _parse(_TABLE)
"""Intent name -> language (`en`, `zh`) -> phrasings."""

OUT_OF_SCOPE: Mapping[str, list[str]] = _parse(_OUT_OF_SCOPE)["none"]
"""Questions augur does not answer (weather, on-call, how-to): a question closer to one of
these than to every intent is not answered, which a similarity threshold alone cannot tell
from a loosely worded but real question."""
