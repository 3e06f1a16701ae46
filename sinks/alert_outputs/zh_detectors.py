# ruff: noqa: RUF001  (full-width Chinese punctuation is intended here)
"""Simplified Chinese title and summary templates, per detector (sinks/alert_outputs/zh.py fills them).

Templates use only the alert's structured fields (`FIELDS`: account, provider, principal, times,
count, evidence), never the detector's English text; a detector with several variants picks one by
a regex on its English title.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Text:
    """A title and summary template; `match` (a regex on the English title) picks a variant."""

    title: str
    summary: str
    match: str = ""


#: Placeholders a template may use (see `fields`).
FIELDS = ("account", "provider", "principal", "who", "by", "when", "count", "evidence", "severity")

DETECTORS: dict[str, tuple[Text, ...]] = {
    "account_takeover_sequence": (
        Text(
            "卖家账户 {account} 疑似被盗：联系方式或银行信息变更后随即发生付款",
            "卖家账户 {account} 的联系方式或收款银行信息被更改后，短时间内又发生了付款或提现"
            "（最近一次由{who}执行；{when}，共 {count} 次）。先改联系或银行信息、随即提款，"
            "是典型的账户盗用模式，请优先处理资金。",
        ),
    ),
    "api_rate_exceeded": (
        Text(
            "{by}超出每分钟 API 请求上限",
            "{by}在卖家账户 {account} 上一分钟内发出的 API 请求超过了上限（最近的超限请求由"
            "操作主体 {principal} 发出；{when}）。超限的分钟数：{count}。",
        ),
    ),
    "api_rate_sustained": (
        Text(
            "{by}每小时 API 请求量远高于平时",
            "{by}在卖家账户 {account} 上一个小时内的 API 请求量远超其平时最繁忙的小时，"
            "超过了设定的倍数阈值（最近的请求来自操作主体 {principal}；{when}）。",
        ),
    ),
    "approval_missing": (
        Text(
            "{by}未经所需审批执行了操作",
            "{who}在卖家账户 {account} 上执行了授权规定须事先审批的操作，但没有有效的审批"
            "（{when}，共 {count} 次）。",
        ),
    ),
    "behaviour_anomaly": (
        Text(
            "{by}跨账户的单日行为异常",
            "{by}在其服务的全部卖家账户上一整天（UTC）的工作明显偏离其平常的日子，"
            "按日的行为模型给出的异常分数超过了阈值（最近的证据来自卖家账户 {account}；{when}）。"
            "可能是分散到多个账户、多个操作主体和多天的缓慢变化，例如持续的小幅降价。",
            match=r"^Unusual day of provider .* across its accounts",
        ),
        Text(
            "{by}在卖家账户 {account} 上的单日行为异常",
            "{by}的操作主体在卖家账户 {account} 上一整天（UTC）的工作明显偏离其"
            "平常的日子，按日的行为模型给出的异常分数超过了阈值（{when}）。可能是分散到多个操作"
            "主体和多天的缓慢变化，例如持续的小幅降价或报告下载。",
            match=r"^Unusual day of provider ",
        ),
        Text(
            "操作主体 {principal}（{by}）行为异常",
            "{who}在卖家账户 {account} 上的行为明显偏离其历史模式，行为模型给出的异常分数"
            "超过了阈值（{when}）。",
        ),
    ),
    "bulk_listing_burst": (
        Text(
            "{by}短时间内批量改动了大量商品",
            "{who}在卖家账户 {account} 上于几分钟内修改或删除了大量不同的 SKU，超出了按其"
            "历史设定的阈值（{when}）。",
        ),
    ),
    "tax_filing_missed": (
        Text(
            "卖家账户 {account} 的税务申报已逾期",
            "卖家账户 {account} 在税务政策规定的截止日期（含宽限期）前没有任何税务申报"
            "（tax.filing）记录（{when}）。",
        ),
    ),
    "failed_writes_spike": (
        Text(
            "卖家账户 {account} 的服务商写操作失败激增",
            "卖家账户 {account} 在短时间内出现大量失败或被拒绝的服务商写操作（最近一次来自"
            "{who}；{when}，共 {count} 次）。可能是数据同步中断、权限过期，或服务商在尝试"
            "不被允许的更改。",
        ),
    ),
    "funds_without_approval": (
        Text(
            "{by}未经授权进行资金操作",
            "{who}在卖家账户 {account} 上执行了资金类操作，但缺少资金权限范围或有效审批"
            "（{when}，共 {count} 次）。服务商的资金操作必须同时具备资金权限和有效审批。",
        ),
    ),
    "new_country_or_asn": (
        Text(
            "{by}的操作主体 {principal} 从新的国家或网络运营商访问",
            "{who}对卖家账户 {account} 的操作来自近期从未出现过的国家或网络运营商（ASN）"
            "（{when}）。",
        ),
    ),
    "impossible_travel": (
        Text(
            "{by}的操作主体 {principal} 在极短时间内从两个遥远地点操作",
            "{who}先后从两个相距甚远的地点操作卖家账户 {account}，间隔短到所需的移动速度"
            "超过了设定上限，说明该凭证可能被共用或已被盗（{when}）。",
        ),
    ),
    "ip_outside_allowlist": (
        Text(
            "{by}从 IP 白名单之外的地址进行操作",
            "{who}从不在其有效授权 IP 白名单内的地址操作了卖家账户 {account}"
            "（{when}，共 {count} 次）。",
        ),
    ),
    "ip_churn": (
        Text(
            "{by}的操作主体 {principal} 在大量网络之间频繁切换",
            "{who}在一小时内从超过允许数量的不同网络（IPv4/IPv6 网段）访问卖家账户 {account}"
            "（{when}）。",
        ),
    ),
    "listing_out_of_scope": (
        Text(
            "{by}超出授权范围进行操作",
            "{who}在卖家账户 {account} 上对其授权范围之外的商品、站点或操作类型进行了操作"
            "（{when}，共 {count} 次）。",
        ),
    ),
    "off_hours_activity": (
        Text(
            "{by}在约定时段之外进行操作",
            "{who}在卖家账户 {account} 上的操作发生在所有相关授权约定的活动时段之外"
            "（{when}，共 {count} 次）。",
        ),
    ),
    "price_change_over_limit": (
        Text(
            "{by}改价幅度超出限制",
            "{who}在卖家账户 {account} 上修改商品价格的幅度超过了无审批时允许的上限"
            "（{when}，共 {count} 次）。",
        ),
    ),
    "refund_burst": (
        Text(
            "卖家账户 {account} 退款激增",
            "卖家账户 {account} 在一个时间窗口内发出的退款数量远超平时，同时达到了最低笔数和"
            "相对平时窗口的倍数阈值（最近一笔退款由{who}发起；{when}）。",
        ),
    ),
    "report_exfiltration": (
        Text(
            "{by}下载了含买家个人数据的报告",
            "{who}在卖家账户 {account} 上下载了含买家姓名、地址或税号的报告（SP-API 受限报告）"
            "（{when}，共 {count} 次）。",
            match=r"buyer personal data",
        ),
        Text(
            "{by}一小时内下载报告数量异常",
            "{who}在卖家账户 {account} 上一小时内下载的报告数量远超平时最繁忙的小时，达到了"
            "最低数量和倍数阈值（{when}）。",
        ),
    ),
    "provider_sensitive_action": (
        Text(
            "{by}对卖家账户执行了敏感操作",
            "{who}在卖家账户 {account} 上执行了敏感操作（管理用户权限、凭证或 MFA，或修改"
            "账户的法律与联系信息）；任何合作服务商都不应进行此类操作（{when}）。",
        ),
    ),
    "provider_without_grant": (
        Text(
            "{by}在没有有效授权的情况下操作了账户",
            "{who}在卖家账户 {account} 上执行了操作，但当时没有任何有效授权覆盖该操作"
            "（{when}，共 {count} 次）。",
        ),
    ),
    "change_outside_gateway": (
        Text(
            "卖家账户 {account} 上有绕过网关的更改",
            "亚马逊观察到卖家账户 {account} 上的一项更改（价格、库存、状态、属性，卖家应用的"
            "Feed、报告或付款，或银行账户），但网关没有记录任何与之匹配的调用（{when}，共 {count} 次）。"
            "有人绕过网关进行了更改：Seller Central 中的服务商员工、卖家直接授权的服务商应用，"
            "或持有卖家应用凭证的人。",
        ),
    ),
    # detectors/provider_wide/rules/ (keyed by provider across accounts)
    "cross_account_spray": (
        Text(
            "{by}的操作主体 {principal} 从新网络在几分钟内访问了多个卖家账户",
            "{who}在几分钟内从其从未使用过的网络访问了多个卖家账户（证据列出了每个账户上的事件；"
            "最近一次在卖家账户 {account}；{when}）。这是被盗凭证被逐一尝试的典型迹象。",
        ),
    ),
    "cross_account_price_cuts": (
        Text(
            "{by}在一小时内对多个卖家账户降价",
            "{by}在一小时内对多个卖家账户的商品降价，每次降幅都低于单账户上限，但涉及的账户数"
            "超过了阈值（最近一次在卖家账户 {account}，由操作主体 {principal} 执行；{when}，共 {count} 次）。",
        ),
    ),
    "low_and_slow_exfiltration": (
        Text(
            "{by}数天内下载的敏感报告远多于平时",
            "{by}在最近几天内跨卖家账户下载的敏感报告总数远高于其平时的日均水平，而每小时的"
            "数量都低于单小时阈值（最近一次在卖家账户 {account}，由操作主体 {principal} 下载；{when}）。",
        ),
    ),
    "dormant_reactivation": (
        Text(
            "{by}的操作主体 {principal} 沉寂数周后从新网络进行写操作",
            "{who}在长时间（超过其以往最长的空闲间隔）没有任何活动后重新出现，并从从未使用过的"
            "网络对卖家账户 {account} 进行了敏感写操作（{when}，共 {count} 次）。",
        ),
    ),
    "grant_then_abuse": (
        Text(
            "{by}的授权被扩大后立即被大量使用，或由非常规审批人授权",
            "卖家账户 {account} 上{by}的授权被扩大（新的权限范围、站点或操作主体）后几分钟内，"
            "新获得的权限就被大量使用；或授权由从未管理过该账户权限的人员发出（{when}，共 {count} 次）。",
        ),
    ),
    "concurrent_sessions": (
        Text(
            "{by}的同一会话同时从两个遥远的地点使用",
            "{who}的同一个会话 ID 在几分钟内分别从两个相距甚远的国家使用（最近一次在卖家账户"
            " {account}；{when}），说明会话令牌已被复制，两方同时持有。",
        ),
    ),
}
