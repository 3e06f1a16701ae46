# ruff: noqa: RUF001  (full-width Chinese punctuation is intended here)
"""Simplified Chinese for every response step a detector can emit (sinks/alert_outputs/zh.py).

Keyed by the step's exact English text: tests/alert_feeds/test_zh.py fails when a detector gains a
step that is not here.
"""

from __future__ import annotations

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
    # detectors/behaviour/scoring.py (behaviour_anomaly)
    "Compare the hour's (or the day's) evidence with the work agreed with the provider; if it is"
    " not explained, rotate the principal's credentials.": (
        "将该小时（或该日）内的证据与和服务商约定的工作内容进行比对；若无法解释，请轮换该操作主体的凭证。"
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
