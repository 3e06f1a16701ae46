# ruff: noqa: RUF001, RUF002  (full-width Chinese punctuation is intended here)
"""Simplified Chinese titles, summaries and response steps for alerts (outputs with `lang = "zh"`).

Detectors write their text in English with detector-specific numbers; a Chinese-speaking team
needs to know at a glance what happened and what to do. This catalogue renders a title and a
summary per detector from the alert's structured fields only (account, provider, principal,
times, count, evidence), and translates every response step a detector can emit, keyed by its
exact English text (tests/alert_feeds/test_zh.py fails when a detector gains a step or a detector
id that is not here). An unknown detector or step falls back to English, logged once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from sinks.alert_outputs.base import Alert

log = logging.getLogger(__name__)


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

#: Every response step a detector can emit (detectors/responses.py and the detectors' RESPONSE
#: tuples), English text -> Simplified Chinese.
RESPONSES: dict[str, str] = {
    # detectors/responses.py
    "Revoke the provider's permissions in Seller Central (User Permissions) and its SP-API"
    " authorization (Apps and Services > Manage Your Apps) until the activity is explained.": (
        "在 Seller Central 中撤销该服务商的权限（User Permissions）及其 SP-API 授权"
        "（Apps and Services > Manage Your Apps），直到其活动得到解释。"
    ),
    "Rotate the credentials the principal used (SP-API refresh token, Seller Central password, MFA device).": (
        "轮换该操作主体使用过的凭证（SP-API refresh token、Seller Central 密码、MFA 设备）。"
    ),
    "Open a case with the marketplace (Seller Support) citing the evidence events with their UTC"
    " timestamps; attach `partnerwatch evidence` output.": (
        "向平台（Seller Support）提交工单，列出证据事件及其 UTC 时间戳，并附上"
        " `partnerwatch evidence` 的输出。"
    ),
    "Get the provider's written confirmation of who acted, from where and why.": (
        "要求服务商书面确认：由谁、从何处、因何原因进行了这些操作。"
    ),
    "Preserve the records: keep audit.events and audit.alerts for at least two years (PW_RETENTION_DAYS).": (
        "保全记录：audit.events 和 audit.alerts 至少保留两年（PW_RETENTION_DAYS）。"
    ),
    "Check Payments > Disbursements and the deposit method now; cancel pending disbursements"
    " and restore the verified bank account.": (
        "立即检查 Payments > Disbursements 及收款方式；取消待处理的付款，并恢复已验证的银行账户。"
    ),
    # detectors/responses.py (API_ABUSE: api_rate_exceeded, api_rate_sustained)
    "Check the provider's integration with them: a runaway job, or a leaked SP-API token?": (
        "与服务商一起检查其集成：是失控的任务，还是 SP-API 令牌已泄露？"
    ),
    # detectors/rules/behaviour_anomaly.py
    "Compare the hour's evidence with the work agreed with the provider; if it is not explained,"
    " rotate the principal's credentials.": (
        "将该小时内的证据与和服务商约定的工作内容进行比对；若无法解释，请轮换该操作主体的凭证。"
    ),
    # detectors/rules/bulk_listing_burst.py
    "Pause the principal's API access (SP-API authorization) and check the listings it touched;"
    " restore deleted or altered listings from the last flat-file export.": (
        "暂停该操作主体的 API 访问（SP-API 授权），检查其改动过的商品；用最近一次的平面文件"
        "（flat file）导出恢复被删除或被修改的商品。"
    ),
    # detectors/rules/tax_filing_missed.py
    "Check with the tax agent whether the return was filed outside PartnerWatch's view; if not,"
    " file now and ask the tax office about late-filing penalties.": (
        "向税务代理确认申报是否已在 PartnerWatch 记录之外提交；如未提交，请立即申报，并向税务机关"
        "咨询逾期申报的罚款。"
    ),
    # detectors/rules/failed_writes_spike.py
    "Look at the failures' operations and resources (audit.events, outcome) with the provider:"
    " a broken feed, expired permissions, or changes it may not make?": (
        "与服务商一起查看失败操作涉及的操作和资源（audit.events 的 outcome）：是数据推送中断、"
        "权限过期，还是它无权进行的更改？"
    ),
    # detectors/rules/new_country_or_asn.py
    "Ask the provider whether this principal now works from this country or network (travel, new"
    " office, VPN, cloud host); a principal nobody can place is a leaked credential.": (
        "询问服务商该操作主体现在是否从这个国家或网络工作（出差、新办公室、VPN、云主机）；"
        "无人能说明来源的操作主体，意味着凭证已泄露。"
    ),
    "Review the principal's actions from this address with `partnerwatch sql` (audit.events,"
    " source_ip) and revoke the grant if any was not the provider's.": (
        "用 `partnerwatch sql` 审查该操作主体从此地址进行的操作（audit.events 的 source_ip）；"
        "只要有一项不是服务商所为，就撤销授权。"
    ),
    # detectors/rules/impossible_travel.py
    "Treat the principal's credential as shared or stolen until the provider explains both locations.": (
        "在服务商说明这两个地点之前，将该操作主体的凭证视为已被共用或被盗。"
    ),
    "Ask the provider which of the two locations is its own; revoke the grant until it answers.": (
        "询问服务商两个地点中哪一个是其自己的；在其答复之前撤销授权。"
    ),
    # detectors/rules/ip_outside_allowlist.py
    "Confirm with the provider whether this address is theirs; if not, rotate the principal's"
    " credentials (SP-API refresh token or Seller Central password) at once.": (
        "向服务商确认该地址是否属于他们；如果不是，立即轮换该操作主体的凭证"
        "（SP-API refresh token 或 Seller Central 密码）。"
    ),
    "Revoke or narrow the grant until the provider explains the access.": (
        "在服务商解释此次访问之前，撤销授权或缩小授权范围。"
    ),
    "Review every action from this IP with `partnerwatch sql` (audit.events, source_ip).": (
        "用 `partnerwatch sql` 审查来自该 IP 的每一项操作（audit.events 的 source_ip）。"
    ),
    # detectors/rules/ip_churn.py
    "Ask the provider how this principal reaches the account (proxy pool, VPN, several users"
    " sharing one login); many unrelated networks in an hour usually mean a leaked credential.": (
        "询问服务商该操作主体如何访问账户（代理池、VPN、多人共用一个登录）；一小时内出现许多"
        "互不相关的网络，通常意味着凭证已泄露。"
    ),
    "Set an `ip_allowlist` on the provider's grant so only its own networks are accepted.": (
        "在该服务商的授权上设置 `ip_allowlist`，只接受其自有网络的访问。"
    ),
    # detectors/rules/off_hours_activity.py
    "If the provider cannot account for the activity, rotate the principal's credentials and"
    " revoke the grant until it can.": (
        "如果服务商无法说明这些活动，请轮换该操作主体的凭证，并在其说明之前撤销授权。"
    ),
    # detectors/rules/price_change_over_limit.py
    "Restore the listing's previous price in Seller Central (or via the Listings API) now.": (
        "立即在 Seller Central 中（或通过 Listings API）恢复该商品原来的价格。"
    ),
    # detectors/rules/refund_burst.py
    "Review the refunds in the window (Orders > Manage Refunds): who issued them, to which orders"
    " and buyers; contact Seller Support to stop refunds that were not yours.": (
        "审查该时间窗口内的退款（Orders > Manage Refunds）：由谁发起、涉及哪些订单和买家；"
        "联系 Seller Support 阻止不是您发起的退款。"
    ),
    # detectors/rules/report_exfiltration.py
    "Ask the provider which job downloaded these reports and where the files are now; buyer"
    " personal data may have to be reported as a data breach (GDPR art. 33: 72 hours).": (
        "询问服务商是哪个任务下载了这些报告、文件现在在哪里；涉及买家个人数据的，可能需要"
        "按数据泄露上报（GDPR 第 33 条：72 小时内）。"
    ),
    # detectors/rules/change_outside_gateway.py
    "Check who changed it: the Seller Central users with access to this area, and the apps authorized in Manage Your Apps.": (
        "核实是谁做的更改：有权访问该区域的 Seller Central 用户，以及在 Manage Your Apps 中授权的应用。"
    ),
    "Revoke every provider app authorized directly and every Seller Central login that should go through the gateway.": (
        "撤销所有被直接授权的服务商应用，以及所有本应通过网关操作的 Seller Central 登录。"
    ),
    # detectors/provider_wide/rules/cross_account_spray.py
    "Suspend the principal on every account it touched (the evidence names each): its credential"
    " is being used by someone outside the provider's network.": (
        "在其访问过的每个账户上暂停该操作主体（证据逐一列出了这些账户）：其凭证正被服务商网络"
        "之外的人使用。"
    ),
    # detectors/provider_wide/rules/cross_account_price_cuts.py
    "Check the named listings' prices on every account in the evidence and restore them (Manage"
    " Pricing, or the last flat-file export); ask the provider which repricing job made the cuts.": (
        "检查证据中每个账户上相关商品的价格并予以恢复（Manage Pricing，或最近一次的平面文件导出）；"
        "询问服务商是哪个调价任务做的降价。"
    ),
    # detectors/provider_wide/rules/low_and_slow_exfiltration.py
    "List the provider's report downloads of the named days with `partnerwatch sql` (audit.events,"
    " action report.download) and ask the provider which jobs made them and where the files went.": (
        "用 `partnerwatch sql` 列出该服务商在相关日期的报告下载（audit.events，action 为"
        " report.download），并询问服务商是哪些任务下载的、文件去了哪里。"
    ),
    # detectors/provider_wide/rules/dormant_reactivation.py
    "Ask the provider who still uses this principal and from where; disable logins and API clients"
    " of staff who left or integrations no longer in use.": (
        "询问服务商现在是谁、从哪里在使用该操作主体；停用已离职员工的登录和不再使用的集成的"
        " API 客户端。"
    ),
    # detectors/provider_wide/rules/grant_then_abuse.py
    "Review the grant change with whoever issued it (the evidence names the grant event) and undo"
    " it if nobody at the seller asked for it; check what the provider did with the new access.": (
        "与发出该授权变更的人核实（证据列出了授权事件）；如果卖家方面没有人要求此变更，请撤销它，"
        "并检查服务商用新权限做了什么。"
    ),
    # detectors/provider_wide/rules/concurrent_sessions.py
    "End the session everywhere (sign the principal out, revoke its SP-API tokens): two parties"
    " hold it at once.": (
        "在所有地方结束该会话（让该操作主体退出登录，吊销其 SP-API 令牌）：有两方同时持有该会话。"
    ),
}

_warned: set[tuple[str, str]] = set()


def _warn_once(kind: str, name: str) -> None:
    if (kind, name) not in _warned:
        _warned.add((kind, name))
        log.warning("no Simplified Chinese text for %s %r: the card shows it in English", kind, name)


def fields(alert: Alert) -> dict[str, str]:
    """The values the templates are filled with, from the alert's structured fields only."""
    provider = str(alert.get("provider_id") or "")
    principal = str(alert.get("principal_id") or "") or "-"
    first, last = str(alert.get("first_seen", "")), str(alert.get("last_seen") or "")
    return {
        "account": str(alert.get("account_id", "")),
        "provider": provider or "-",
        "principal": principal,
        "who": f"服务商 {provider} 的操作主体 {principal} " if provider else f"操作主体 {principal} ",
        "by": f"服务商 {provider} " if provider else f"操作主体 {principal} ",
        "when": f"{first} 至 {last}" if last and last != first else f"时间 {first}",
        "count": str(alert.get("count", 1)),
        "evidence": str(len(alert.get("evidence_event_ids", []))),
        "severity": str(alert.get("severity", "")),
    }


def _tidy(text: str) -> str:
    """Drop the space an id leaves before full-width punctuation ("服务商 P-7 ）")."""
    return re.sub(r" +(?=[\u3000-\u303f\uff00-\uffef])", "", text).strip()


def text_for(alert: Alert) -> tuple[str, str] | None:
    """The (title, summary) of `alert` in Chinese, or None for a detector with no templates."""
    detector = str(alert.get("detector", ""))
    variants = DETECTORS.get(detector)
    if not variants:
        _warn_once("detector", detector)
        return None
    title = str(alert.get("title", ""))
    chosen = next(v for v in variants if not v.match or re.search(v.match, title) or v is variants[-1])
    values = fields(alert)
    return _tidy(chosen.title.format_map(values)), _tidy(chosen.summary.format_map(values))


def step(text: str) -> str:
    """A response step in Chinese (the English text when the catalogue does not know it)."""
    zh = RESPONSES.get(text)
    if zh is None:
        _warn_once("response step", text[:60])
        return text
    return zh
