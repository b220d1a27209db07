"""A Salesforce-shaped raw data set for a Japanese medical-staffing business, in a local DuckDB file.

The demo needs a lake that looks like what Fivetran lands from Salesforce (lowercase columns,
18-character ids, soft deletes via `is_deleted`, UTC modstamps) and that changes from day to day,
so that the dbt marts and the syncs downstream have real inserts, edits and deletes to carry.

Everything is generated with set-based DuckDB SQL. Randomness comes from `hash(seed, key, tag)`,
never from `random()`: the same seed gives byte-identical tables on every run and every thread
count, and a single column can be changed without reshuffling the others.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb

RAW_SCHEMA = "raw_salesforce"

TABLES = ("account", "contact", "job_posting__c", "application__c", "application__history", "event")

# Salesforce key prefixes: standard objects keep theirs, custom objects get the a0X range.
KEY_PREFIX = {
    "account": "001",
    "contact": "003",
    "job_posting__c": "a0J",
    "application__c": "a0K",
    "application__history": "017",
    "event": "00U",
    "user": "005",
}

# Rows at scale 1.0 (history is derived from applications: about two status changes each),
# and the floor at any scale, so tiny test lakes still have every table populated.
BASE_ROWS = {
    "corporation": 1_000,
    "facility": 5_000,
    "contact": 100_000,
    "job_posting__c": 30_000,
    "application__c": 200_000,
    "event": 1_000_000,
}
MIN_ROWS = {
    "corporation": 5,
    "facility": 20,
    "contact": 40,
    "job_posting__c": 20,
    "application__c": 60,
    "event": 200,
}

_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Ids look like '0015g00000A01bcAAE': key prefix, pod '5g', zeros, then the sequence number in
# base62 offset so its first digit is 'A' (mixed case, so the checksum suffix is exercised).
_ID_OFFSET = 10 * 62**4
_ID_POD = "5g00000"


def _epoch(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp())


LAKE_END = _epoch(2025, 6, 30, 23)  # the last instant of the generated history (UTC)
_ORG_START = _epoch(2012, 4, 1)
_CONTACT_START = _epoch(2021, 4, 1)
_POSTING_START = _epoch(2022, 1, 1)
_DAY = 86_400
_USERS = 25  # owner ids point at these (the user object itself is not part of the demo lake)


def salesforce_id_checksum(id15: str) -> str:
    """Reference for the 3-character case-safe suffix of a 15-character Salesforce id.

    Kept in Python so a test can check the SQL macro that generates every id in the lake.
    """
    if len(id15) != 15:
        raise ValueError(f"expected 15 characters, got {len(id15)}")
    suffix = ""
    for chunk in range(3):
        bits = 0
        for i, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << i
        suffix += _CHECKSUM_ALPHABET[bits]
    return suffix


# --------------------------------------------------------------------------- vocabulary

_SURNAMES = [
    ("佐藤", "サトウ", "sato"), ("鈴木", "スズキ", "suzuki"), ("高橋", "タカハシ", "takahashi"),
    ("田中", "タナカ", "tanaka"), ("伊藤", "イトウ", "ito"), ("渡辺", "ワタナベ", "watanabe"),
    ("山本", "ヤマモト", "yamamoto"), ("中村", "ナカムラ", "nakamura"), ("小林", "コバヤシ", "kobayashi"),
    ("加藤", "カトウ", "kato"), ("吉田", "ヨシダ", "yoshida"), ("山田", "ヤマダ", "yamada"),
    ("佐々木", "ササキ", "sasaki"), ("山口", "ヤマグチ", "yamaguchi"), ("松本", "マツモト", "matsumoto"),
    ("井上", "イノウエ", "inoue"), ("木村", "キムラ", "kimura"), ("林", "ハヤシ", "hayashi"),
    ("斎藤", "サイトウ", "saito"), ("清水", "シミズ", "shimizu"), ("山崎", "ヤマザキ", "yamazaki"),
    ("森", "モリ", "mori"), ("池田", "イケダ", "ikeda"), ("橋本", "ハシモト", "hashimoto"),
    ("阿部", "アベ", "abe"), ("石川", "イシカワ", "ishikawa"), ("山下", "ヤマシタ", "yamashita"),
    ("中島", "ナカジマ", "nakajima"), ("石井", "イシイ", "ishii"), ("小川", "オガワ", "ogawa"),
    ("前田", "マエダ", "maeda"), ("岡田", "オカダ", "okada"), ("長谷川", "ハセガワ", "hasegawa"),
    ("藤田", "フジタ", "fujita"), ("後藤", "ゴトウ", "goto"), ("近藤", "コンドウ", "kondo"),
    ("村上", "ムラカミ", "murakami"), ("遠藤", "エンドウ", "endo"), ("青木", "アオキ", "aoki"),
    ("坂本", "サカモト", "sakamoto"), ("齋藤", "サイトウ", "saito"), ("髙橋", "タカハシ", "takahashi"),
]  # fmt: skip
_GIVEN_NAMES = [
    ("陽菜", "ヒナ", "hina"), ("結衣", "ユイ", "yui"), ("美咲", "ミサキ", "misaki"), ("さくら", "サクラ", "sakura"),
    ("葵", "アオイ", "aoi"), ("優子", "ユウコ", "yuko"), ("恵美", "エミ", "emi"), ("由美子", "ユミコ", "yumiko"),
    ("真由美", "マユミ", "mayumi"), ("明美", "アケミ", "akemi"), ("直子", "ナオコ", "naoko"), ("彩", "アヤ", "aya"),
    ("愛", "アイ", "ai"), ("千尋", "チヒロ", "chihiro"), ("舞", "マイ", "mai"), ("香織", "カオリ", "kaori"),
    ("智子", "トモコ", "tomoko"), ("美穂", "ミホ", "miho"), ("麻衣", "マイ", "mai"), ("美和", "ミワ", "miwa"),
    ("久美子", "クミコ", "kumiko"), ("奈々", "ナナ", "nana"), ("翔太", "ショウタ", "shota"),
    ("大輔", "ダイスケ", "daisuke"), ("健太", "ケンタ", "kenta"), ("拓也", "タクヤ", "takuya"),
    ("蓮", "レン", "ren"), ("大翔", "ヒロト", "hiroto"), ("誠", "マコト", "makoto"), ("浩二", "コウジ", "koji"),
    ("隆", "タカシ", "takashi"), ("悠斗", "ユウト", "yuto"), ("亮", "リョウ", "ryo"), ("直樹", "ナオキ", "naoki"),
]  # fmt: skip

# (prefecture, city, latitude, longitude, phone area code, first 3 digits of the postal code)
_GEO = [
    ("東京都", "新宿区", 35.6938, 139.7034, "03", "160"),
    ("東京都", "世田谷区", 35.6464, 139.6532, "03", "154"),
    ("東京都", "練馬区", 35.7356, 139.6517, "03", "176"),
    ("東京都", "大田区", 35.5613, 139.7160, "03", "144"),
    ("東京都", "足立区", 35.7750, 139.8045, "03", "120"),
    ("東京都", "江戸川区", 35.7068, 139.8683, "03", "132"),
    ("東京都", "八王子市", 35.6664, 139.3160, "042", "192"),
    ("東京都", "町田市", 35.5484, 139.4466, "042", "194"),
    ("神奈川県", "横浜市港北区", 35.5190, 139.6330, "045", "222"),
    ("神奈川県", "横浜市青葉区", 35.5527, 139.5371, "045", "225"),
    ("神奈川県", "川崎市中原区", 35.5763, 139.6595, "044", "211"),
    ("神奈川県", "相模原市中央区", 35.5714, 139.3733, "042", "252"),
    ("神奈川県", "藤沢市", 35.3392, 139.4900, "0466", "251"),
    ("大阪府", "大阪市北区", 34.7055, 135.4983, "06", "530"),
    ("大阪府", "大阪市天王寺区", 34.6586, 135.5190, "06", "543"),
    ("大阪府", "堺市堺区", 34.5733, 135.4830, "072", "590"),
    ("大阪府", "豊中市", 34.7812, 135.4696, "06", "560"),
    ("大阪府", "東大阪市", 34.6794, 135.6008, "06", "577"),
    ("愛知県", "名古屋市中区", 35.1681, 136.9065, "052", "460"),
    ("愛知県", "名古屋市千種区", 35.1664, 136.9474, "052", "464"),
    ("愛知県", "豊田市", 35.0824, 137.1561, "0565", "471"),
    ("愛知県", "岡崎市", 34.9549, 137.1744, "0564", "444"),
    ("埼玉県", "さいたま市大宮区", 35.9064, 139.6240, "048", "330"),
    ("埼玉県", "川口市", 35.8078, 139.7241, "048", "332"),
    ("埼玉県", "所沢市", 35.7995, 139.4686, "04", "359"),
    ("埼玉県", "越谷市", 35.8910, 139.7909, "048", "343"),
    ("千葉県", "千葉市中央区", 35.6073, 140.1063, "043", "260"),
    ("千葉県", "船橋市", 35.6947, 139.9826, "047", "273"),
    ("千葉県", "柏市", 35.8676, 139.9758, "04", "277"),
    ("千葉県", "松戸市", 35.7878, 139.9030, "047", "271"),
    ("兵庫県", "神戸市中央区", 34.6913, 135.1830, "078", "650"),
    ("兵庫県", "姫路市", 34.8151, 134.6853, "079", "670"),
    ("兵庫県", "西宮市", 34.7376, 135.3416, "0798", "662"),
    ("福岡県", "福岡市博多区", 33.5898, 130.4207, "092", "812"),
    ("福岡県", "福岡市中央区", 33.5891, 130.3927, "092", "810"),
    ("福岡県", "北九州市小倉北区", 33.8834, 130.8752, "093", "802"),
    ("福岡県", "久留米市", 33.3193, 130.5083, "0942", "830"),
    ("北海道", "札幌市中央区", 43.0554, 141.3409, "011", "060"),
    ("北海道", "旭川市", 43.7706, 142.3650, "0166", "070"),
    ("北海道", "函館市", 41.7687, 140.7288, "0138", "040"),
    ("宮城県", "仙台市青葉区", 38.2682, 140.8694, "022", "980"),
    ("京都府", "京都市中京区", 35.0116, 135.7681, "075", "604"),
    ("京都府", "宇治市", 34.8844, 135.7997, "0774", "611"),
    ("広島県", "広島市中区", 34.3853, 132.4553, "082", "730"),
    ("広島県", "福山市", 34.4858, 133.3623, "084", "720"),
    ("静岡県", "静岡市葵区", 34.9756, 138.3828, "054", "420"),
    ("静岡県", "浜松市中央区", 34.7108, 137.7261, "053", "430"),
    ("新潟県", "新潟市中央区", 37.9161, 139.0364, "025", "951"),
    ("熊本県", "熊本市中央区", 32.8031, 130.7079, "096", "860"),
    ("沖縄県", "那覇市", 26.2124, 127.6809, "098", "900"),
]

_TOWNS = [
    "本町", "中央", "栄町", "緑町", "旭町", "幸町", "桜台", "南町", "北町", "東町", "西町", "若葉", "青葉台",
    "富士見", "宮前", "松が丘", "平和台", "大手町", "元町", "錦町", "日吉", "新町", "駅前", "春日", "泉",
    "千代田", "曙町", "八幡", "柳町", "港町",
]  # fmt: skip
_BUILDINGS = ["メディカルビル", "さくらビル", "第2ビル", "駅前ビル", "グランドタワー", "ヒルズ"]
_WORDS = [
    "さくら", "ひまわり", "あおば", "みどり", "つばさ", "ふれあい", "やすらぎ", "ひかり", "こもれび", "たんぽぽ",
    "すずらん", "あさひ", "けやき", "かえで", "わかば", "もみじ", "青空", "若草", "白樺", "清流", "陽だまり",
    "悠々", "希望", "慈光", "共愛", "仁和", "誠和", "博愛", "松風", "向日葵",
]  # fmt: skip
_CORP_WORDS = [
    "仁愛", "清風", "慈恵", "誠心", "恵生", "光陽", "博仁", "康生", "明和", "緑樹", "陽光", "和光", "敬愛", "聖和",
    "永寿", "親和", "啓仁", "松柏", "桜花", "愛育",
]  # fmt: skip
_COMPANY_WORDS = ["さくら", "ケアネクスト", "ライフ", "メディケア", "ひまわり", "アイ・エム・エス", "Smile & Care"]

_OCCUPATIONS = [
    # occupation, monthly min range, hourly min range, needs a national license
    ("看護師", 260_000, 380_000, 1_600, 2_400, True),
    ("准看護師", 220_000, 300_000, 1_400, 1_900, True),
    ("介護福祉士", 210_000, 280_000, 1_150, 1_500, True),
    ("介護職員", 190_000, 250_000, 1_100, 1_350, False),
    ("薬剤師", 320_000, 500_000, 2_000, 3_000, True),
    ("理学療法士", 240_000, 330_000, 1_700, 2_300, True),
    ("作業療法士", 240_000, 320_000, 1_700, 2_200, True),
    ("保育士", 200_000, 270_000, 1_100, 1_500, True),
    ("医療事務", 180_000, 240_000, 1_050, 1_300, False),
    ("臨床検査技師", 230_000, 310_000, 1_500, 2_000, True),
    ("ケアマネジャー", 240_000, 320_000, 1_500, 2_000, True),
    ("管理栄養士", 220_000, 290_000, 1_300, 1_700, True),
]
# Which occupations each facility type hires (repeats weight the draw).
_OCCUPATIONS_BY_FACILITY = {
    "病院": ["看護師"] * 5 + ["准看護師"] * 2 + ["薬剤師", "理学療法士", "作業療法士", "臨床検査技師", "医療事務"],
    "クリニック": ["看護師"] * 4 + ["准看護師"] * 2 + ["医療事務"] * 2 + ["臨床検査技師"],
    "介護施設": ["介護福祉士"] * 3 + ["介護職員"] * 3 + ["看護師", "准看護師", "ケアマネジャー", "理学療法士"],
    "薬局": ["薬剤師"] * 4 + ["医療事務"],
    "保育園": ["保育士"] * 5 + ["看護師", "管理栄養士"],
}
_DESIRED_OCCUPATIONS = (
    ["看護師"] * 8 + ["准看護師"] * 3 + ["介護福祉士"] * 4 + ["介護職員"] * 3 + ["薬剤師"] * 2
    + ["理学療法士", "作業療法士", "保育士", "保育士", "医療事務", "臨床検査技師", "ケアマネジャー", "管理栄養士"]
)  # fmt: skip
_HOOKS = [
    "日勤のみ", "残業ほぼなし", "未経験歓迎", "駅チカ徒歩5分", "年休120日以上", "ブランクOK", "週3日〜OK",
    "賞与4ヶ月", "託児所あり", "高収入", "車通勤OK", "夜勤専従",
]  # fmt: skip
_DESCRIPTION_SENTENCES = [
    "当院は地域密着型の医療を大切にしています。",
    "日勤のみの勤務も相談可能です。",
    "「未経験OK」ブランクのある方も歓迎します。",
    "残業は月平均10時間程度です。",
    "駅から徒歩5分、車通勤も可能です（駐車場完備）。",
    "年間休日120日以上、有給休暇の取得率も高い職場です。",
    "賞与は年2回（昨年度実績4.0ヶ月分）。",
    "託児所完備で子育て中の方も安心して働けます。",
    "教育体制が充実しており、プリセプター制度があります。",
    "夜勤手当：1回あたり12,000円。",
    "資格取得支援制度あり。",
    "社会保険完備、退職金制度あり。",
    "スタッフの平均年齢は30代後半、アットホームな雰囲気です。",
    "電子カルテ導入済みです。",
    '"働きやすさ"を第一に考えた職場づくりをしています。',
    "Let's work together! 一緒に地域医療を支えましょう。",
    "シフトは希望を考慮して作成します。",
    "週3日・1日4時間からOK。",
    "見学・面談はいつでも受け付けています。",
    "入職祝い金制度があります（条件あり）。",
    "通勤手当は上限月3万円まで支給します。",
    "寮・借り上げ社宅のご用意があります。",
    "訪問入浴・機能訓練にも力を入れています。",
    "チーム医療を重視し、多職種の連携が活発です。",
    "応募書類：履歴書・職務経歴書・資格証の写し。",
    "選考フロー：書類選考 → 面接（1回） → 内定。",
    "※ 詳細は面接時にご説明いたします。",
    "勤務時間：8:30〜17:30（休憩60分）。",
]
_EMOJI = ["🌸", "😊", "✨🏥", "👩‍⚕️", "🎉", "🍀"]
_LEAD_SOURCES = ["Indeed", "求人ボックス", "自社サイト", "紹介", "ハローワーク", "LINE", "マイナビ"]
_EMAIL_DOMAINS = ["gmail.com", "yahoo.co.jp", "docomo.ne.jp", "icloud.com", "ezweb.ne.jp", "outlook.jp"]
_SUBJECTS = {
    "Call": [
        "電話：初回ヒアリング",
        "電話：面接日程の調整",
        "電話：求人のご紹介",
        "電話：内定後フォロー",
        "電話：不在（折り返し依頼）",
    ],
    "Email": ["メール：求人票の送付", "メール：面接のご案内", "メール：応募書類の確認", "メール：選考結果のご連絡"],
    "Meeting": ["面談：キャリア相談", "オンライン面談：希望条件の確認", "来社面談：登録手続き"],
    "Interview": ["面接：一次面接", "面接：施設見学＋面接", "オンライン面接：最終面接"],
}


# --------------------------------------------------------------------------- SQL helpers


def _q(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _lst(values: list[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def _pick(values: list[str], key: str, tag: str) -> str:
    return f"{_lst(values)}[ix({key}, {_q(tag)}, {len(values)})]"


def _weighted(key: str, tag: str, choices: list[tuple[str, float]]) -> str:
    """CASE expression drawing one of `choices` with the given weights."""
    total = sum(w for _, w in choices)
    parts, acc = [], 0.0
    for value, weight in choices[:-1]:
        acc += weight / total
        parts.append(f"WHEN u({key}, {_q(tag)}) < {acc:.6f} THEN {_q(value)}")
    return f"CASE {' '.join(parts)} ELSE {_q(choices[-1][0])} END"


def _ts(epoch_expr: str) -> str:
    return f"to_timestamp({epoch_expr})"


def _b62_sql(n: str, digits: int) -> str:
    parts = [f"substr('{_BASE62}', (({n}) // {62**k} % 62)::INTEGER + 1, 1)" for k in range(digits - 1, -1, -1)]
    return " || ".join(parts)


def _checksum_sql(s: str) -> str:
    chunks = []
    for chunk in range(3):
        bits = " + ".join(
            f"(CASE WHEN ascii(substr({s}, {chunk * 5 + i + 1}, 1)) BETWEEN 65 AND 90 THEN {1 << i} ELSE 0 END)"
            for i in range(5)
        )
        chunks.append(f"substr('{_CHECKSUM_ALPHABET}', {bits} + 1, 1)")
    return " || ".join(chunks)


def _digit_checksum_sql(n: str) -> str:
    """Checksum character of the last 5-character chunk, from its base62 digits (10..35 = A..Z)."""
    bits = " + ".join(
        f"(CASE WHEN ({n}) // {62 ** (4 - i)} % 62 BETWEEN 10 AND 35 THEN {1 << i} ELSE 0 END)" for i in range(5)
    )
    return f"substr('{_CHECKSUM_ALPHABET}', ({bits})::INTEGER + 1, 1)"


def _connect(path: str | Path, seed: int) -> duckdb.DuckDBPyConnection:
    """Open the lake with the generator's temp macros and lookup tables installed."""
    seed = int(seed)
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    macros = [
        f"h(k, tag) AS hash({seed}, k, tag)",
        "u(k, tag) AS (h(k, tag) % 1000003)::DOUBLE / 1000003.0",
        "ix(k, tag, n) AS (1 + h(k, tag) % n)::BIGINT",
        "ri(k, tag, lo, hi) AS (lo + (h(k, tag) % (hi - lo + 1))::BIGINT)",
        f"sf_checksum(s) AS {_checksum_sql('s')}",
        f"sf_id15(prefix, seq) AS prefix || '{_ID_POD}' || {_b62_sql(f'seq + {_ID_OFFSET}', 5)}",
        # The first ten characters are constant per object (folded once); only the base62
        # sequence digits vary, so the last checksum character is computed from the numbers.
        f"sf_id(prefix, seq) AS sf_id15(prefix, seq) || left(sf_checksum(prefix || '{_ID_POD}00000'), 2)"
        f" || {_digit_checksum_sql(f'seq + {_ID_OFFSET}')}",
        f"business_time(e, k, tag) AS (e // {_DAY}) * {_DAY} + ri(k, tag, 0, 39) * 900",
    ]
    for macro in macros:
        con.execute(f"CREATE OR REPLACE TEMP MACRO {macro}")
    geo_rows = ", ".join(
        f"({i}, {_q(p)}, {_q(c)}, {lat}, {lon}, {_q(area)}, {_q(zip3)})"
        for i, (p, c, lat, lon, area, zip3) in enumerate(_GEO, start=1)
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _geo AS SELECT * FROM (VALUES "
        + geo_rows
        + ") t(geo_idx, pref, city, lat, lon, area, zip3)"
    )
    occ_rows = ", ".join(f"({_q(o)}, {a}, {b}, {c}, {d}, {lic})" for o, a, b, c, d, lic in _OCCUPATIONS)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _occ AS SELECT * FROM (VALUES "
        + occ_rows
        + ") t(occupation, m_lo, m_hi, h_lo, h_hi, licensed)"
    )
    return con


def _phone(area: str, key: str, tag: str) -> str:
    first = (
        f"CASE length({area}) WHEN 2 THEN ri({key}, '{tag}.1', 1000, 9999) "
        f"WHEN 3 THEN ri({key}, '{tag}.1', 100, 999) ELSE ri({key}, '{tag}.1', 10, 99) END"
    )
    return f"{area} || '-' || ({first})::VARCHAR || '-' || lpad(ri({key}, '{tag}.2', 0, 9999)::VARCHAR, 4, '0')"


def _mobile(key: str, tag: str) -> str:
    return (
        f"{_pick(['090', '080', '070'], key, tag + '.p')} || '-' || ri({key}, '{tag}.1', 1000, 9999)::VARCHAR"
        f" || '-' || lpad(ri({key}, '{tag}.2', 0, 9999)::VARCHAR, 4, '0')"
    )


def _street(key: str, tag: str) -> str:
    town = _pick(_TOWNS, key, tag + ".town")
    chome = (
        f"{town} || ri({key}, '{tag}.c', 1, 6)::VARCHAR || '丁目' || ri({key}, '{tag}.b', 1, 30)::VARCHAR"
        f" || '番' || ri({key}, '{tag}.g', 1, 20)::VARCHAR || '号'"
    )
    banchi = f"{town} || ri({key}, '{tag}.n', 100, 2999)::VARCHAR || '番地'"
    building = (
        f"CASE WHEN u({key}, '{tag}.bl') < 0.15 THEN ' ' || {_pick(_BUILDINGS, key, tag + '.bn')}"
        f" || ri({key}, '{tag}.f', 1, 9)::VARCHAR || 'F' ELSE '' END"
    )
    return f"(CASE WHEN u({key}, '{tag}.kind') < 0.8 THEN {chome} ELSE {banchi} END) || {building}"


def _postal(zip3: str, key: str, tag: str) -> str:
    return f"{zip3} || '-' || lpad(ri({key}, '{tag}', 0, 9999)::VARCHAR, 4, '0')"


_SYSTEM_COLUMNS = """
    {ts_created}::TIMESTAMPTZ AS created_date,
    {ts_modified}::TIMESTAMPTZ AS last_modified_date,
    {ts_modified}::TIMESTAMPTZ AS system_modstamp,
    {ts_synced}::TIMESTAMPTZ AS _fivetran_synced"""


def _system_columns(created_e: str, modified_e: str, key: str, tag: str) -> str:
    return _SYSTEM_COLUMNS.format(
        ts_created=_ts(created_e),
        ts_modified=_ts(modified_e),
        ts_synced=_ts(f"{modified_e} + ri({key}, '{tag}.sync', 120, 900)"),
    )


# --------------------------------------------------------------------------- row generators
# Each takes a SQL source of "slots" (sequence number, references, time window) and returns
# the SELECT producing finished raw rows, so the initial load and the daily changes share them.


def _accounts_sql(src: str) -> str:
    """src: seq, is_facility, parent_id, parent_geo_idx, created_e, modified_e."""
    k = "seq"
    ftype = _weighted(
        k,
        "acc.ftype",
        [("病院", 18), ("クリニック", 37), ("介護施設", 25), ("薬局", 12), ("保育園", 8)],
    )
    w = _pick(_WORDS, k, "acc.w")
    sn = _pick([s for s, _, _ in _SURNAMES], k, "acc.sn")
    town = _pick(_TOWNS, k, "acc.street.town")
    names = {
        "病院": [f"{w} || '総合病院'", f"{w} || '病院'", f"{sn} || '記念病院'", f"{w} || '中央病院'"],
        "クリニック": [
            f"{w} || 'クリニック'",
            f"{sn} || '内科クリニック'",
            f"{sn} || '整形外科'",
            f"{w} || 'こどもクリニック'",
            f"{sn} || '皮膚科クリニック'",
            f"{w} || '眼科'",
            f"'Mom''s ' || {w} || 'レディースクリニック'",
        ],
        "介護施設": [
            f"'介護老人保健施設' || {w}",
            f"'特別養護老人ホーム' || {w} || '苑'",
            f"'グループホーム' || {w}",
            f"'デイサービスセンター' || {w}",
            f"'有料老人ホーム' || {w} || 'の杜'",
        ],
        "薬局": [f"{w} || '薬局'", f"{w} || '調剤薬局 ' || {town} || '店'", f"'すこやか薬局 ' || {town} || '店'"],
        "保育園": [f"{w} || '保育園'", f"{w} || 'こども園'", f"'Kid''s ' || {w} || '保育園'"],
    }
    name_cases = " ".join(
        f"WHEN {_q(t)} THEN [{', '.join(opts)}][ix({k}, 'acc.nameform', {len(opts)})]" for t, opts in names.items()
    )
    cw = _pick(_CORP_WORDS, k, "acc.cw")
    corp_forms = [
        f"'医療法人社団' || {cw} || '会'",
        f"'医療法人' || {cw} || '会'",
        f"'社会福祉法人' || {cw} || '会'",
        f"'医療法人財団' || {cw} || '会'",
        f"'株式会社' || {_pick(_COMPANY_WORDS, k, 'acc.co')}",
        f"'株式会社' || {_pick(_COMPANY_WORDS, k, 'acc.co')} || 'ホールディングス'",
    ]
    corp_name = f"[{', '.join(corp_forms)}][ix({k}, 'acc.corpform', {len(corp_forms)})]"
    beds = f"""CASE b.facility_type
            WHEN '病院' THEN CASE WHEN u({k}, 'acc.beds.null') < 0.1 THEN NULL
                                 ELSE ri({k}, 'acc.beds', 20, 120) * 5 END
            WHEN '介護施設' THEN CASE WHEN u({k}, 'acc.beds.null') < 0.3 THEN NULL
                                 ELSE ri({k}, 'acc.beds', 18, 150) END
            WHEN 'クリニック' THEN CASE WHEN u({k}, 'acc.beds.null') < 0.8 THEN NULL
                                 ELSE ri({k}, 'acc.beds', 0, 19) END
            ELSE NULL END"""
    return f"""
WITH b AS (
    SELECT s.*,
        sf_id('{KEY_PREFIX["account"]}', s.seq) AS id,
        CASE WHEN s.is_facility THEN {ftype} END AS facility_type,
        CASE WHEN s.parent_geo_idx IS NOT NULL AND u({k}, 'acc.geo.inherit') < 0.6 THEN s.parent_geo_idx
             ELSE ix({k}, 'acc.geo', {len(_GEO)}) END AS geo_idx
    FROM ({src}) s
)
SELECT
    b.id,
    false AS is_deleted,
    CASE WHEN b.is_facility THEN CASE b.facility_type {name_cases} END ELSE {corp_name} END AS name,
    CASE WHEN b.is_facility THEN 'Medical Facility' ELSE 'Corporation' END AS type,
    b.facility_type AS facility_type__c,
    b.parent_id,
    'Japan' AS billing_country,
    g.pref AS billing_state,
    g.city AS billing_city,
    {_street(k, "acc.street")} AS billing_street,
    {_postal("g.zip3", k, "acc.zip")} AS billing_postal_code,
    CASE WHEN u({k}, 'acc.phone.null') < CASE WHEN b.is_facility THEN 0.05 ELSE 0.1 END THEN NULL
         ELSE {_phone("g.area", k, "acc.phone")} END AS phone,
    ({beds})::INTEGER AS number_of_beds__c,
    (CASE WHEN NOT b.is_facility THEN ri({k}, 'acc.rev', 100, 50000) * 1000000.0
          WHEN u({k}, 'acc.rev.null') < 0.4 THEN NULL
          ELSE ri({k}, 'acc.rev', 30, 20000) * 1000000.0 + ri({k}, 'acc.rev.c', 0, 999) * 1000
     END)::DECIMAL(18, 2) AS annual_revenue,
    round(g.lat + (u({k}, 'acc.lat') - 0.5) * 0.06, 6)::DOUBLE AS latitude,
    round(g.lon + (u({k}, 'acc.lon') - 0.5) * 0.06, 6)::DOUBLE AS longitude,
    sf_id('{KEY_PREFIX["user"]}', ix({k}, 'acc.owner', {_USERS})) AS owner_id,
    {_system_columns("b.created_e", "b.modified_e", k, "acc")}
FROM b JOIN _geo g USING (geo_idx)
"""


def _contacts_sql(src: str) -> str:
    """src: seq, created_e, modified_e."""
    k = "seq"
    lic = ", ".join(_q(o) for o, *_, licensed in _OCCUPATIONS if licensed)
    return f"""
WITH b AS (
    SELECT s.*,
        sf_id('{KEY_PREFIX["contact"]}', s.seq) AS id,
        ix({k}, 'con.sn', {len(_SURNAMES)}) AS sn,
        ix({k}, 'con.gn', {len(_GIVEN_NAMES)}) AS gn,
        ix({k}, 'con.geo', {len(_GEO)}) AS geo_idx,
        CASE WHEN u({k}, 'con.birth.null') < 0.06 THEN NULL
             ELSE DATE '1960-07-01' + ri({k}, 'con.birth', 0, 16000)::INTEGER END AS birthdate,
        {_pick(_DESIRED_OCCUPATIONS, k, "con.occ")} AS occupation
    FROM ({src}) s
)
SELECT
    b.id,
    false AS is_deleted,
    NULL::VARCHAR AS account_id,
    {_lst([s for s, _, _ in _SURNAMES])}[b.sn] AS last_name,
    {_lst([g for g, _, _ in _GIVEN_NAMES])}[b.gn] AS first_name,
    {_lst([s for s, _, _ in _SURNAMES])}[b.sn] || ' ' || {_lst([g for g, _, _ in _GIVEN_NAMES])}[b.gn] AS name,
    {_lst([kana for _, kana, _ in _SURNAMES])}[b.sn] AS last_name_kana__c,
    {_lst([kana for _, kana, _ in _GIVEN_NAMES])}[b.gn] AS first_name_kana__c,
    {_lst([r for _, _, r in _GIVEN_NAMES])}[b.gn] || '.' || {_lst([r for _, _, r in _SURNAMES])}[b.sn]
        || b.seq::VARCHAR || '@' || {_pick(_EMAIL_DOMAINS, k, "con.dom")} AS email,
    CASE WHEN u({k}, 'con.mobile.null') < 0.08 THEN NULL ELSE {_mobile(k, "con.mobile")} END AS mobile_phone,
    b.birthdate,
    'Japan' AS mailing_country,
    g.pref AS mailing_state,
    g.city AS mailing_city,
    {_street(k, "con.street")} AS mailing_street,
    {_postal("g.zip3", k, "con.zip")} AS mailing_postal_code,
    b.occupation AS desired_occupation__c,
    (CASE WHEN b.birthdate IS NULL THEN ri({k}, 'con.yoe', 0, 20)
          ELSE h({k}, 'con.yoe') % greatest(1, (DATE '2025-06-30' - b.birthdate) // 365 - 20) END
    )::INTEGER AS years_of_experience__c,
    CASE WHEN b.occupation NOT IN ({lic}) OR u({k}, 'con.lic.null') < 0.15 THEN NULL
         ELSE '第' || ri({k}, 'con.lic', 100000, 999999)::VARCHAR || '号' END AS license_number__c,
    u({k}, 'con.active') < 0.85 AS is_active__c,
    {_pick(_LEAD_SOURCES, k, "con.lead")} AS lead_source,
    sf_id('{KEY_PREFIX["user"]}', ix({k}, 'con.owner', {_USERS})) AS owner_id,
    {_system_columns("b.created_e", "b.modified_e", k, "con")}
FROM b JOIN _geo g USING (geo_idx)
"""


def _job_postings_sql(src: str) -> str:
    """src: seq, facility_id, facility_type, facility_city, created_e, horizon_e, draft_share, closed_share."""
    k = "seq"
    occ_cases = " ".join(
        f"WHEN {_q(t)} THEN {_pick(opts, k, 'jp.occ')}" for t, opts in _OCCUPATIONS_BY_FACILITY.items()
    )
    sentences = _lst(_DESCRIPTION_SENTENCES)
    n_sent = len(_DESCRIPTION_SENTENCES)
    return f"""
WITH b AS (
    SELECT s.*,
        sf_id('{KEY_PREFIX["job_posting__c"]}', s.seq) AS id,
        CASE s.facility_type {occ_cases} END AS occupation,
        {_weighted(k, "jp.emp", [("常勤", 55), ("非常勤", 25), ("パート", 20)])} AS employment_type,
        CASE WHEN u({k}, 'jp.draft') < s.draft_share THEN 'Draft'
             WHEN u({k}, 'jp.closed') < s.closed_share THEN 'Closed' ELSE 'Open' END AS status
    FROM ({src}) s
), c AS (
    SELECT b.*,
        CASE WHEN employment_type = '常勤' OR (employment_type = '非常勤' AND u({k}, 'jp.unit') < 0.3)
             THEN '月給' ELSE '時給' END AS salary_unit,
        CASE WHEN status = 'Draft' THEN NULL
             ELSE least(created_e + ri({k}, 'jp.pub', 0, 7 * {_DAY}), horizon_e) END AS published_e
    FROM b
), d AS (
    SELECT c.*,
        CASE WHEN salary_unit = '月給' THEN ri({k}, 'jp.min', o.m_lo // 5000, o.m_hi // 5000) * 5000
             ELSE ri({k}, 'jp.min', o.h_lo // 10, o.h_hi // 10) * 10 END AS salary_min,
        created_e + (u({k}, 'jp.mod') * (horizon_e - created_e))::BIGINT AS modified_e
    FROM c JOIN _occ o USING (occupation)
)
SELECT
    id,
    false AS is_deleted,
    CASE WHEN u({k}, 'jp.urgent') < 0.01 THEN '🌟急募🌟 ' ELSE '' END
        || '【' || facility_city || '】' || occupation || '（' || employment_type || '）／'
        || {_pick(_HOOKS, k, "jp.hook")} AS name,
    facility_id AS account__c,
    occupation AS occupation__c,
    employment_type AS employment_type__c,
    salary_min::INTEGER AS salary_min__c,
    (CASE WHEN u({k}, 'jp.max.null') < 0.3 THEN NULL
          WHEN salary_unit = '月給' THEN salary_min + ri({k}, 'jp.max', 1, 30) * 5000
          ELSE salary_min + ri({k}, 'jp.max', 1, 50) * 10 END)::INTEGER AS salary_max__c,
    salary_unit AS salary_unit__c,
    status AS status__c,
    CASE WHEN u({k}, 'jp.emoji') < 0.03 THEN {_pick(_EMOJI, k, "jp.emoji.which")} || ' ' ELSE '' END
        || array_to_string(
            list_transform(
                range(ri({k}, 'jp.nsent', 1, 14)),
                lambda i: CASE WHEN i > 0 AND u({k}, 'jp.sep') < 0.3 THEN chr(10) ELSE '' END
                          || {sentences}[(1 + h({k} * 64 + i, 'jp.sent') % {n_sent})::BIGINT]),
            '') AS description__c,
    {_ts("published_e")}::TIMESTAMPTZ AS published_at__c,
    (CASE WHEN salary_unit = '月給' THEN salary_min * 12 * (0.20 + 0.15 * u({k}, 'jp.fee'))
          ELSE ri({k}, 'jp.fee', 1500, 4000) * 100 END * 1.1)::DECIMAL(12, 2) AS placement_fee__c,
    {_system_columns("created_e", "greatest(modified_e, coalesce(published_e, created_e))", k, "jp")}
FROM d
"""


def _applications_sql(src: str) -> str:
    """src: seq, candidate_id, posting_id, status, applied_e, changed_e, modified_e."""
    return f"""
SELECT
    sf_id('{KEY_PREFIX["application__c"]}', s.seq) AS id,
    false AS is_deleted,
    s.candidate_id AS candidate__c,
    s.posting_id AS job_posting__c,
    s.status AS status__c,
    {_ts("s.applied_e")}::TIMESTAMPTZ AS applied_at__c,
    {_ts("s.changed_e")}::TIMESTAMPTZ AS status_changed_at__c,
    {_system_columns("s.applied_e", "s.modified_e", "s.seq", "app")}
FROM ({src}) s
"""


def _history_sql(src: str) -> str:
    """src: seq, parent_id, old_value, new_value, t_e."""
    return f"""
SELECT
    sf_id('{KEY_PREFIX["application__history"]}', s.seq) AS id,
    false AS is_deleted,
    s.parent_id,
    'Status__c' AS field,
    s.old_value,
    s.new_value,
    {_system_columns("s.t_e", "s.t_e", "s.seq", "hist")}
FROM ({src}) s
"""


def _events_sql(src: str) -> str:
    """src: seq, who_id, what_id, for_application, t_e (a day inside the window), horizon_e."""
    k = "seq"
    etype_app = _weighted(k, "evt.type", [("Call", 35), ("Email", 30), ("Meeting", 15), ("Interview", 20)])
    etype_other = _weighted(k, "evt.type", [("Call", 45), ("Email", 45), ("Meeting", 10)])
    subject_cases = " ".join(f"WHEN {_q(t)} THEN {_pick(opts, k, 'evt.subject')}" for t, opts in _SUBJECTS.items())
    return f"""
WITH b AS (
    SELECT s.*,
        sf_id('{KEY_PREFIX["event"]}', s.seq) AS id,
        CASE WHEN s.for_application THEN {etype_app} ELSE {etype_other} END AS type,
        least(business_time(s.t_e, {k}, 'evt.time'), s.horizon_e) AS at_e
    FROM ({src}) s
), c AS (
    SELECT b.*,
        CASE WHEN type IN ('Meeting', 'Interview') THEN at_e - ri({k}, 'evt.sched', 0, 5 * {_DAY})
             ELSE at_e END AS created_e
    FROM b
)
SELECT
    id,
    false AS is_deleted,
    who_id,
    what_id,
    type,
    CASE type {subject_cases} END
        || CASE WHEN u({k}, 'evt.emoji') < 0.002 THEN ' 📞' ELSE '' END AS subject,
    {_ts("at_e")}::TIMESTAMPTZ AS activity_date_time,
    (CASE type
        WHEN 'Call' THEN CASE WHEN u({k}, 'evt.dur.null') < 0.1 THEN NULL ELSE ri({k}, 'evt.dur', 3, 30) END
        WHEN 'Email' THEN NULL
        WHEN 'Meeting' THEN [30, 45, 60, 90][ix({k}, 'evt.dur', 4)]
        ELSE [30, 45, 60][ix({k}, 'evt.dur', 3)] END)::INTEGER AS duration_in_minutes,
    {_system_columns("created_e", "at_e", k, "evt")}
FROM c
"""


# --------------------------------------------------------------------------- deletes


def _soft_delete_cascade(con: duckdb.DuckDBPyConnection) -> None:
    """Soft-delete the rows in temp table _del_seed(id, kind, del_e) and everything under them.

    Salesforce cascades master-detail deletes: a facility takes its job postings with it, a
    posting its applications (and their field history), and deleted records take the events
    whose WhatId points at them. Every touched row gets the delete time as its modstamp.
    """
    s = RAW_SCHEMA
    con.execute("CREATE OR REPLACE TEMP TABLE _del_acc AS SELECT id, del_e FROM _del_seed WHERE kind = 'account'")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _del_jp AS
        SELECT id, min(del_e) AS del_e FROM (
            SELECT id, del_e FROM _del_seed WHERE kind = 'posting'
            UNION ALL
            SELECT jp.id, d.del_e FROM {s}.job_posting__c jp JOIN _del_acc d ON jp.account__c = d.id
            WHERE NOT jp.is_deleted
        ) GROUP BY id""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _del_app AS
        SELECT a.id, d.del_e FROM {s}.application__c a JOIN _del_jp d ON a.job_posting__c = d.id
        WHERE NOT a.is_deleted""")
    stamp = """SET is_deleted = true,
        last_modified_date = to_timestamp(greatest(epoch(t.last_modified_date)::BIGINT, d.del_e)),
        system_modstamp = to_timestamp(greatest(epoch(t.system_modstamp)::BIGINT, d.del_e)),
        _fivetran_synced = to_timestamp(greatest(epoch(t.system_modstamp)::BIGINT, d.del_e) + 300)"""
    for table, deleted, column in [
        ("account", "_del_acc", "id"),
        ("job_posting__c", "_del_jp", "id"),
        ("application__c", "_del_app", "id"),
        ("application__history", "_del_app", "parent_id"),
        ("event", "(SELECT * FROM _del_jp UNION ALL SELECT * FROM _del_app)", "what_id"),
    ]:
        con.execute(f"UPDATE {s}.{table} AS t {stamp} FROM {deleted} d WHERE t.{column} = d.id AND NOT t.is_deleted")


# --------------------------------------------------------------------------- public API


def _rows(scale: float) -> dict[str, int]:
    return {name: max(MIN_ROWS[name], round(BASE_ROWS[name] * scale)) for name in BASE_ROWS}


def _counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {t: _scalar(con, f"SELECT count(*) FROM {RAW_SCHEMA}.{t}") for t in TABLES}


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    # fetchall, not fetchone: duckdb 2 refuses .sql() on a connection with an unfinished result
    return int(con.execute(sql).fetchall()[0][0] or 0)


def generate_lake(path: str | Path, scale: float = 0.01, seed: int = 42) -> dict[str, int]:
    """(Re)create the raw schema in the DuckDB file at `path`; return row counts per raw table.

    `scale=1.0` is a mid-size staffing agency (1M events); tests use 0.002-0.01, where floors
    keep every table non-empty.
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    n = _rows(scale)
    n_corp, n_fac = n["corporation"], n["facility"]
    s, end, day = RAW_SCHEMA, LAKE_END, _DAY
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = _connect(path, seed)
    try:
        con.execute("BEGIN")
        con.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
        con.execute(f"CREATE SCHEMA {s}")

        # Accounts: corporations first (seq 1..n_corp), then facilities under them.
        fac_start, fac_span = _epoch(2014, 1, 1), _epoch(2024, 12, 31) - _epoch(2014, 1, 1)
        corp_span = _epoch(2022, 12, 31) - _ORG_START

        def corp_created(seq: str) -> str:
            return f"({_ORG_START} + (u({seq}, 'acc.created') * {corp_span})::BIGINT)"

        accounts_src = f"""
            SELECT seq, is_facility, parent_id, parent_geo_idx, created_e,
                   created_e + (u(seq, 'acc.mod') * ({end} - created_e))::BIGINT AS modified_e
            FROM (
                SELECT seq, is_facility,
                    CASE WHEN has_parent THEN sf_id('{KEY_PREFIX["account"]}', parent_seq) END AS parent_id,
                    CASE WHEN has_parent THEN ix(parent_seq, 'acc.geo', {len(_GEO)}) END AS parent_geo_idx,
                    CASE WHEN NOT is_facility THEN {corp_created("seq")}
                         WHEN has_parent THEN greatest({fac_start} + (u(seq, 'acc.created') * {fac_span})::BIGINT,
                                                       {corp_created("parent_seq")} + {day})
                         ELSE {fac_start} + (u(seq, 'acc.created') * {fac_span})::BIGINT END AS created_e
                FROM (
                    SELECT seq, is_facility, ix(seq, 'acc.parent', {n_corp}) AS parent_seq,
                        -- a handful of facilities are independent (always at least one)
                        is_facility AND NOT (seq = {n_corp + 1} OR u(seq, 'acc.orphan') < 0.01) AS has_parent
                    FROM (SELECT range + 1 AS seq, range + 1 > {n_corp} AS is_facility
                          FROM range({n_corp + n_fac}))
                )
            )"""
        con.execute(f"CREATE TABLE {s}.account AS {_accounts_sql(accounts_src)} ORDER BY id")

        contact_span = end - _CONTACT_START
        contacts_src = f"""
            SELECT seq, created_e, created_e + (u(seq, 'con.mod') * ({end} - created_e))::BIGINT AS modified_e
            FROM (SELECT range + 1 AS seq,
                         {_CONTACT_START} + (sqrt(u(range + 1, 'con.created')) * {contact_span})::BIGINT AS created_e
                  FROM range({n["contact"]}))"""
        con.execute(f"CREATE TABLE {s}.contact AS {_contacts_sql(contacts_src)} ORDER BY id")

        # About 30% of facilities went quiet some time ago: their postings are closed and
        # nothing happens around them after `until_e` (gives the churn scores something to find).
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _fac AS
            SELECT *, CASE WHEN u(id, 'fac.dormant') < 0.3
                           THEN least({end}, greatest({end} - ri(id, 'fac.quiet', 30, 900) * {day}, c_e + 60 * {day}))
                           ELSE {end} END AS until_e
            FROM (SELECT id, facility_type__c, billing_city, epoch(created_date)::BIGINT AS c_e,
                         row_number() OVER (ORDER BY id) AS rn
                  FROM {s}.account WHERE type = 'Medical Facility')""")
        postings_src = f"""
            SELECT r.seq, f.id AS facility_id, f.facility_type__c AS facility_type,
                   f.billing_city AS facility_city,
                   greatest({_POSTING_START}
                            + (sqrt(u(r.seq, 'jp.created')) * (f.until_e - {_POSTING_START}))::BIGINT,
                            f.c_e + {day}) AS created_e,
                   f.until_e AS horizon_e,
                   CASE WHEN f.until_e < {end} THEN 0.0 ELSE 0.08 END AS draft_share,
                   CASE WHEN f.until_e < {end} THEN 1.0 ELSE 0.28 END AS closed_share
            FROM (SELECT range + 1 AS seq FROM range({n["job_posting__c"]})) r
            JOIN _fac f ON f.rn = ix(r.seq, 'jp.fac', {n_fac})"""
        con.execute(f"CREATE TABLE {s}.job_posting__c AS {_job_postings_sql(postings_src)} ORDER BY id")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _pub AS
            SELECT jp.id, epoch(jp.published_at__c)::BIGINT AS pub_e, f.until_e,
                   row_number() OVER (ORDER BY jp.id) AS rn
            FROM {s}.job_posting__c jp JOIN _fac f ON f.id = jp.account__c
            WHERE jp.published_at__c IS NOT NULL""")

        # Applications: draw (candidate, published posting) pairs, keep the first of each pair.
        n_app = n["application__c"]
        n_pub = _scalar(con, "SELECT count(*) FROM _pub")
        rejected = "CASE WHEN u(seq, 'app.rej') < 0.5 THEN ['Applied', 'Screening', 'Rejected'] " + (
            "ELSE ['Applied', 'Screening', 'Interview', 'Rejected'] END"
        )
        status = _weighted(
            "seq",
            "app.status",
            [("Applied", 15), ("Screening", 15), ("Interview", 15), ("Offer", 5), ("Hired", 15),
             ("Rejected", 25), ("Withdrawn", 10)],
        )  # fmt: skip
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _app AS
            WITH c AS (SELECT id, epoch(created_date)::BIGINT AS c_e, row_number() OVER (ORDER BY id) AS rn
                       FROM {s}.contact),
            attempts AS (
                SELECT a.k, c.id AS candidate_id, p.id AS posting_id, greatest(c.c_e, p.pub_e) AS g, p.until_e
                FROM (SELECT range AS k FROM range({int(n_app * 1.5) + 100})) a
                JOIN c ON c.rn = ix(a.k, 'app.cand', {n["contact"]})
                JOIN _pub p ON p.rn = ix(a.k, 'app.post', {n_pub})
                WHERE greatest(c.c_e, p.pub_e) <= p.until_e  -- nobody applies to a quiet facility
            ),
            pairs AS (
                SELECT min(k) AS k, candidate_id, posting_id, min(g) AS g, min(until_e) AS until_e FROM attempts
                GROUP BY candidate_id, posting_id ORDER BY k LIMIT {n_app}
            ),
            statused AS (
                SELECT row_number() OVER (ORDER BY k) AS seq, candidate_id, posting_id, g, until_e FROM pairs
            ),
            pathed AS (
                SELECT *, {status} AS status,
                    g + (pow(u(seq, 'app.applied'), 1.5) * (until_e - g))::BIGINT AS applied_e
                FROM statused
            ),
            stepped AS (
                SELECT *, CASE status
                    WHEN 'Applied' THEN ['Applied']
                    WHEN 'Screening' THEN ['Applied', 'Screening']
                    WHEN 'Interview' THEN ['Applied', 'Screening', 'Interview']
                    WHEN 'Offer' THEN ['Applied', 'Screening', 'Interview', 'Offer']
                    WHEN 'Hired' THEN ['Applied', 'Screening', 'Interview', 'Offer', 'Hired']
                    WHEN 'Rejected' THEN {rejected}
                    ELSE list_concat(['Applied', 'Screening', 'Interview'][1:ri(seq, 'app.wd', 1, 3)], ['Withdrawn'])
                    END AS path
                FROM pathed
            )
            SELECT *, sf_id('{KEY_PREFIX["application__c"]}', seq) AS id,
                least(changed_e + ri(seq, 'app.mod', 0, 3600), until_e) AS modified_e
            FROM (
                -- a process that would run past the end of the lake is squeezed into what is left
                SELECT *, CASE WHEN len(path) = 1 THEN applied_e
                    ELSE applied_e + least((len(path) - 1) * ri(seq, 'app.step', 1, 10) * {day}
                                           + ri(seq, 'app.jitter', 0, {day}),
                                           (u(seq, 'app.squeeze') * (until_e - applied_e))::BIGINT) END AS changed_e
                FROM stepped
            )""")
        con.execute(f"""
            CREATE TABLE {s}.application__c AS {
            _applications_sql(
                "SELECT seq, candidate_id, posting_id, status, applied_e, changed_e, modified_e FROM _app"
            )
        } ORDER BY id""")
        con.execute(f"""
            CREATE TABLE {s}.application__history AS {
            _history_sql('''
                SELECT row_number() OVER (ORDER BY seq, i) AS seq, id AS parent_id,
                       path[i] AS old_value, path[i + 1] AS new_value,
                       applied_e + ((changed_e - applied_e) * i // (len(path) - 1))::BIGINT AS t_e
                FROM (SELECT *, unnest(range(1, len(path))) AS i FROM _app)''')
        } ORDER BY id""")

        # Events: 70% about an application (the candidate, what = application), the rest
        # introduce a published posting to a candidate (what = job posting).
        events_src = f"""
            WITH e AS (
                SELECT seq, u(seq, 'evt.kind') < 0.7 AS for_app FROM (SELECT range + 1 AS seq FROM range({n["event"]}))
            ),
            c AS (SELECT id, epoch(created_date)::BIGINT AS c_e, row_number() OVER (ORDER BY id) AS rn
                  FROM {s}.contact)
            SELECT e.seq, e.for_app AS for_application,
                coalesce(a.candidate_id, c.id) AS who_id,
                coalesce(a.id, p.id) AS what_id,
                CASE WHEN e.for_app
                     THEN a.applied_e + (u(e.seq, 'evt.t')
                          * (least(a.changed_e + 14 * {day}, a.until_e) - a.applied_e))::BIGINT
                     ELSE least(greatest(c.c_e, p.pub_e), p.until_e)
                          + (u(e.seq, 'evt.t') * greatest(p.until_e - greatest(c.c_e, p.pub_e), 0))::BIGINT
                     END AS t_e,
                coalesce(a.until_e, p.until_e) AS horizon_e
            FROM e
            LEFT JOIN _app a ON a.seq = CASE WHEN e.for_app THEN ix(e.seq, 'evt.app', {n_app}) END
            LEFT JOIN c ON c.rn = CASE WHEN NOT e.for_app THEN ix(e.seq, 'evt.cand', {n["contact"]}) END
            LEFT JOIN _pub p ON p.rn = CASE WHEN NOT e.for_app THEN ix(e.seq, 'evt.post', {n_pub}) END"""
        con.execute(f"CREATE TABLE {s}.event AS {_events_sql(events_src)} ORDER BY id")

        # Some history already deleted: ~0.3% of postings and one facility, with their cascade.
        n_del_jp = max(1, round(n["job_posting__c"] * 0.003))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _del_seed AS
            SELECT id, kind, greatest(m_e, {end} - ri(id, 'del.when', 0, 90 * {day})) AS del_e FROM (
                (SELECT id, 'posting' AS kind, epoch(system_modstamp)::BIGINT AS m_e FROM {s}.job_posting__c
                 ORDER BY h(id, 'del.jp'), id LIMIT {n_del_jp})
                UNION ALL
                (SELECT id, 'account' AS kind, epoch(system_modstamp)::BIGINT AS m_e FROM {s}.account
                 WHERE type = 'Medical Facility' AND parent_id IS NOT NULL ORDER BY h(id, 'del.acc'), id LIMIT 1)
            )""")
        _soft_delete_cascade(con)

        last = {t: _scalar(con, f"SELECT count(*) FROM {s}.{t}") for t in TABLES}
        con.execute(f"""
            CREATE TABLE {s}._demo_state AS SELECT
                0 AS day, {int(seed)}::BIGINT AS seed, {float(scale)}::DOUBLE AS scale,
                (SELECT max(system_modstamp)::DATE FROM {s}.event) AS as_of_date,
                {", ".join(f"{last[t]}::BIGINT AS seq_{t}" for t in TABLES)}""")
        con.execute("COMMIT")
        return _counts(con)
    finally:
        con.close()


def apply_day_of_changes(path: str | Path, seed: int = 42) -> dict[str, dict[str, int]]:
    """Apply the next simulated day of changes (new, edited, deleted records).

    Returns {table: {"inserted": n, "updated": n, "deleted": n}}, measured by diffing the tables
    against a snapshot taken before the changes, so the counts are what a sync should see.
    The day follows the lake's latest modstamp; the day counter lives in `_demo_state`.
    Deletes are soft (is_deleted, cascaded like Salesforce), except a few hard-deleted events.
    """
    s, day_s = RAW_SCHEMA, _DAY
    con = _connect(path, seed)
    try:
        rel = con.execute(f"SELECT * FROM {s}._demo_state")
        columns = [d[0] for d in rel.description]
        state = dict(zip(columns, rel.fetchall()[0], strict=True))
        day = int(state["day"]) + 1
        latest = _scalar(
            con,
            "SELECT max(m) FROM ("
            + " UNION ALL ".join(f"SELECT max(epoch(system_modstamp))::BIGINT AS m FROM {s}.{t}" for t in TABLES)
            + ")",
        )
        start = (latest // day_s + 1) * day_s
        horizon = start + day_s - 1
        tag = f"day{day}"

        def t(name: str) -> str:  # a hash tag unique to this day
            return _q(f"{tag}.{name}")

        def when(key: str, name: str) -> str:  # an instant inside the day
            return f"({start} + ri({key}, {t(name)}, 0, {day_s - 1}))"

        def live(table: str, extra: str = "") -> int:
            return _scalar(con, f"SELECT count(*) FROM {s}.{table} WHERE NOT is_deleted {extra}")

        con.execute("BEGIN")
        for table in TABLES:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _before_{table} AS "
                f"SELECT id, is_deleted, system_modstamp FROM {s}.{table}"
            )
        old = f"created_date < to_timestamp({start})"  # rows that existed before today

        # 1. Deletes: a few facilities and ~0.5% of postings, cascaded; a few events vanish for good.
        n_fac = max(1, round(live("account", "AND type = 'Medical Facility'") * 0.0006))
        n_jp = max(1, round(live("job_posting__c") * 0.005))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _del_seed AS
            SELECT id, kind, {when("id", "del.t")} AS del_e FROM (
                (SELECT id, 'account' AS kind FROM {s}.account
                 WHERE NOT is_deleted AND type = 'Medical Facility'
                 ORDER BY h(id, {t("del.acc")}), id LIMIT {n_fac})
                UNION ALL
                (SELECT id, 'posting' AS kind FROM {s}.job_posting__c WHERE NOT is_deleted
                 ORDER BY h(id, {t("del.jp")}), id LIMIT {n_jp})
            )""")
        _soft_delete_cascade(con)
        n_gone = max(2, round(live("event") * 0.00001))
        con.execute(f"""
            DELETE FROM {s}.event WHERE id IN (
                SELECT id FROM {s}.event WHERE NOT is_deleted ORDER BY h(id, {t("evt.hard")}), id LIMIT {n_gone})""")

        # 2. Inserts (~1% of each object; events and history for one business day).
        seq = {table: int(state[f"seq_{table}"]) for table in TABLES}

        def slots(table: str, n: int) -> str:
            return f"(SELECT {seq[table]} + range + 1 AS seq FROM range({n}))"

        n_corp_live = live("account", "AND type = 'Corporation'")
        n_acc = max(1, round(live("account") * 0.01))
        con.execute(f"""
            INSERT INTO {s}.account BY NAME {
            _accounts_sql(f'''
                WITH corp AS (
                    SELECT id, billing_state, billing_city, row_number() OVER (ORDER BY id) AS rn
                    FROM {s}.account WHERE NOT is_deleted AND type = 'Corporation'
                ), n AS (
                    SELECT seq, u(seq, {t("acc.kind")}) < 0.85 AS is_facility,
                           u(seq, {t("acc.orphan")}) < 0.02 AS orphan, {when("seq", "acc.t")} AS created_e
                    FROM {slots("account", n_acc)}
                )
                SELECT n.seq, n.is_facility,
                    CASE WHEN n.is_facility AND NOT n.orphan THEN corp.id END AS parent_id,
                    CASE WHEN n.is_facility AND NOT n.orphan THEN g.geo_idx END AS parent_geo_idx,
                    n.created_e, n.created_e AS modified_e
                FROM n
                LEFT JOIN corp ON corp.rn = ix(n.seq, {t("acc.parent")}, {max(1, n_corp_live)})
                LEFT JOIN _geo g ON g.pref = corp.billing_state AND g.city = corp.billing_city''')
        }""")

        n_con = max(1, round(live("contact") * 0.01))
        con.execute(f"""
            INSERT INTO {s}.contact BY NAME {
            _contacts_sql(
                f"SELECT seq, {when('seq', 'con.t')} AS created_e, {when('seq', 'con.t')} AS modified_e "
                f"FROM {slots('contact', n_con)}"
            )
        }""")

        n_fac_live = live("account", "AND type = 'Medical Facility'")
        n_new_jp = max(1, round(live("job_posting__c") * 0.01))
        con.execute(f"""
            INSERT INTO {s}.job_posting__c BY NAME {
            _job_postings_sql(f'''
                WITH f AS (
                    SELECT id, facility_type__c, billing_city, row_number() OVER (ORDER BY id) AS rn
                    FROM {s}.account WHERE NOT is_deleted AND type = 'Medical Facility'
                )
                SELECT r.seq, f.id AS facility_id, f.facility_type__c AS facility_type,
                       f.billing_city AS facility_city, {when("r.seq", "jp.t")} AS created_e,
                       {horizon} AS horizon_e, 0.2 AS draft_share, 0.0 AS closed_share
                FROM {slots("job_posting__c", n_new_jp)} r
                JOIN f ON f.rn = ix(r.seq, {t("jp.fac")}, {n_fac_live})''')
        }""")

        n_con_live = live("contact")
        n_open = live("job_posting__c", "AND status__c = 'Open'")
        n_new_app = max(1, round(live("application__c") * 0.01))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _new_app AS
            WITH c AS (SELECT id, epoch(created_date)::BIGINT AS c_e, row_number() OVER (ORDER BY id) AS rn
                       FROM {s}.contact WHERE NOT is_deleted),
            p AS (SELECT id, epoch(published_at__c)::BIGINT AS pub_e, row_number() OVER (ORDER BY id) AS rn
                  FROM {s}.job_posting__c WHERE NOT is_deleted AND status__c = 'Open'),
            attempts AS (
                SELECT a.k, c.id AS candidate_id, p.id AS posting_id, greatest(c.c_e, p.pub_e) + 60 AS g
                FROM (SELECT range AS k FROM range({3 * n_new_app + 20})) a
                JOIN c ON c.rn = ix(a.k, {t("app.cand")}, {max(1, n_con_live)})
                JOIN p ON p.rn = ix(a.k, {t("app.post")}, {max(1, n_open)})
                ANTI JOIN {s}.application__c x
                    ON x.candidate__c = c.id AND x.job_posting__c = p.id
            ),
            pairs AS (
                SELECT min(k) AS k, candidate_id, posting_id, min(g) AS g FROM attempts
                GROUP BY candidate_id, posting_id ORDER BY k LIMIT {n_new_app}
            )
            SELECT {seq["application__c"]} + row_number() OVER (ORDER BY k) AS seq, candidate_id, posting_id,
                   least(greatest({start} + ri(k, {t("app.t")}, 0, {day_s - 1}), g), {horizon}) AS applied_e
            FROM pairs""")
        con.execute(f"""
            INSERT INTO {s}.application__c BY NAME {
            _applications_sql(
                "SELECT seq, candidate_id, posting_id, 'Applied' AS status, applied_e, "
                "applied_e AS changed_e, applied_e AS modified_e FROM _new_app"
            )
        }""")

        n_evt = max(5, round(live("event") * 0.001))
        n_app_live = live("application__c")
        n_open = live("job_posting__c", "AND status__c = 'Open'")
        con.execute(f"""
            INSERT INTO {s}.event BY NAME {
            _events_sql(f'''
                WITH e AS (SELECT seq, u(seq, {t("evt.kind")}) < 0.7 AS for_app FROM {slots("event", n_evt)}),
                a AS (SELECT id, candidate__c, row_number() OVER (ORDER BY id) AS rn
                      FROM {s}.application__c WHERE NOT is_deleted),
                c AS (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM {s}.contact WHERE NOT is_deleted),
                p AS (SELECT id, row_number() OVER (ORDER BY id) AS rn
                      FROM {s}.job_posting__c WHERE NOT is_deleted AND status__c = 'Open')
                SELECT e.seq, e.for_app AS for_application,
                       coalesce(a.candidate__c, c.id) AS who_id, coalesce(a.id, p.id) AS what_id,
                       {start} AS t_e, {horizon} AS horizon_e
                FROM e
                LEFT JOIN a ON a.rn = CASE WHEN e.for_app THEN ix(e.seq, {t("evt.app")}, {max(1, n_app_live)}) END
                LEFT JOIN c ON c.rn = CASE WHEN NOT e.for_app THEN ix(e.seq, {t("evt.cand")}, {n_con_live}) END
                LEFT JOIN p ON p.rn = CASE WHEN NOT e.for_app THEN ix(e.seq, {t("evt.post")}, {max(1, n_open)}) END
                WHERE coalesce(a.id, p.id) IS NOT NULL''')
        }""")

        # 3. Edits of rows that existed before today and survived the deletes.
        stamp = """last_modified_date = to_timestamp(x.t_e), system_modstamp = to_timestamp(x.t_e),
            _fivetran_synced = to_timestamp(x.t_e + 300)"""
        n_upd = max(1, round(live("job_posting__c") * 0.04))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _upd AS
            SELECT id, {_weighted("id", f"{tag}.jp.kind", [("status", 4), ("salary", 3), ("description", 3)])} AS kind,
                   {when("id", "jp.upd.t")} AS t_e
            FROM {s}.job_posting__c WHERE NOT is_deleted AND {old}
            ORDER BY h(id, {t("jp.upd")}), id LIMIT {n_upd}""")
        con.execute(f"""
            UPDATE {s}.job_posting__c AS j SET
                status__c = CASE WHEN x.kind <> 'status' THEN j.status__c
                                 WHEN j.status__c = 'Open' THEN 'Closed' ELSE 'Open' END,
                published_at__c = CASE WHEN x.kind = 'status' AND j.status__c = 'Draft' THEN to_timestamp(x.t_e)
                                       ELSE j.published_at__c END,
                salary_min__c = j.salary_min__c + CASE WHEN x.kind <> 'salary' THEN 0
                                                       WHEN j.salary_unit__c = '月給' THEN 5000 ELSE 50 END,
                salary_max__c = j.salary_max__c + CASE WHEN x.kind <> 'salary' THEN 0
                                                       WHEN j.salary_unit__c = '月給' THEN 10000 ELSE 100 END,
                description__c = CASE WHEN x.kind <> 'description' THEN j.description__c
                    ELSE j.description__c || chr(10) || '【' || strftime(to_timestamp(x.t_e), '%-m/%-d')
                         || '更新】' || {_pick(_DESCRIPTION_SENTENCES, "j.id", f"{tag}.jp.desc")} END,
                {stamp}
            FROM _upd x WHERE j.id = x.id""")

        n_upd = max(1, round(live("contact") * 0.02))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _upd AS
            SELECT c.id, {_weighted("c.id", f"{tag}.con.kind", [("phone", 3), ("active", 3), ("move", 2), ("exp", 2)])}
                       AS kind,
                   {when("c.id", "con.upd.t")} AS t_e, g.pref, g.city, {_mobile("c.id", f"{tag}.con.mobile")} AS mobile
            FROM {s}.contact c JOIN _geo g ON g.geo_idx = ix(c.id, {t("con.geo")}, {len(_GEO)})
            WHERE NOT c.is_deleted AND c.{old}
            ORDER BY h(c.id, {t("con.upd")}), c.id LIMIT {n_upd}""")
        con.execute(f"""
            UPDATE {s}.contact AS c SET
                mobile_phone = CASE WHEN x.kind = 'phone' THEN x.mobile ELSE c.mobile_phone END,
                is_active__c = CASE WHEN x.kind = 'active' THEN NOT c.is_active__c ELSE c.is_active__c END,
                mailing_state = CASE WHEN x.kind = 'move' THEN x.pref ELSE c.mailing_state END,
                mailing_city = CASE WHEN x.kind = 'move' THEN x.city ELSE c.mailing_city END,
                years_of_experience__c = c.years_of_experience__c + CASE WHEN x.kind = 'exp' THEN 1 ELSE 0 END,
                {stamp}
            FROM _upd x WHERE c.id = x.id""")

        n_upd = max(1, round(live("account") * 0.005))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _upd AS
            SELECT a.id, {when("a.id", "acc.upd.t")} AS t_e, {_phone("g.area", "a.id", f"{tag}.acc.phone")} AS phone
            FROM {s}.account a JOIN _geo g ON g.pref = a.billing_state AND g.city = a.billing_city
            WHERE NOT a.is_deleted AND a.{old}
            ORDER BY h(a.id, {t("acc.upd")}), a.id LIMIT {n_upd}""")
        con.execute(f"""
            UPDATE {s}.account AS a SET
                phone = x.phone,
                number_of_beds__c = CASE WHEN a.number_of_beds__c >= 20 THEN a.number_of_beds__c + 5
                                         ELSE a.number_of_beds__c END,
                {stamp}
            FROM _upd x WHERE a.id = x.id""")

        # Applications move one step forward; each move writes its field-history row.
        n_upd = max(1, round(live("application__c") * 0.02))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _upd AS
            SELECT id, status__c AS old_value,
                CASE status__c
                    WHEN 'Applied' THEN CASE WHEN u(id, {t("app.next")}) < 0.85 THEN 'Screening' ELSE 'Withdrawn' END
                    WHEN 'Screening' THEN CASE WHEN u(id, {t("app.next")}) < 0.7 THEN 'Interview' ELSE 'Rejected' END
                    WHEN 'Interview' THEN CASE WHEN u(id, {t("app.next")}) < 0.5 THEN 'Offer' ELSE 'Rejected' END
                    ELSE CASE WHEN u(id, {t("app.next")}) < 0.8 THEN 'Hired' ELSE 'Withdrawn' END
                END AS new_value,
                {when("id", "app.upd.t")} AS t_e
            FROM {s}.application__c
            WHERE NOT is_deleted AND {old} AND status__c IN ('Applied', 'Screening', 'Interview', 'Offer')
            ORDER BY h(id, {t("app.upd")}), id LIMIT {n_upd}""")
        con.execute(f"""
            UPDATE {s}.application__c AS a SET
                status__c = x.new_value, status_changed_at__c = to_timestamp(x.t_e), {stamp}
            FROM _upd x WHERE a.id = x.id""")
        con.execute(f"""
            INSERT INTO {s}.application__history BY NAME {
            _history_sql(
                f"SELECT {seq['application__history']} + row_number() OVER (ORDER BY id) AS seq, "
                "id AS parent_id, old_value, new_value, t_e FROM _upd"
            )
        }""")

        # 4. Measure what changed, then advance the day counter and the id sequences.
        result: dict[str, dict[str, int]] = {}
        for table in TABLES:
            b = f"_before_{table}"
            result[table] = {
                "inserted": _scalar(con, f"SELECT count(*) FROM {s}.{table} ANTI JOIN {b} USING (id)"),
                "updated": _scalar(
                    con,
                    f"SELECT count(*) FROM {b} b JOIN {s}.{table} a USING (id) "
                    "WHERE NOT b.is_deleted AND NOT a.is_deleted AND a.system_modstamp <> b.system_modstamp",
                ),
                "deleted": _scalar(
                    con,
                    f"SELECT count(*) FROM {b} b LEFT JOIN {s}.{table} a USING (id) "
                    "WHERE NOT b.is_deleted AND (a.id IS NULL OR a.is_deleted)",
                ),
            }
            seq[table] += result[table]["inserted"]
        con.execute(
            f"UPDATE {s}._demo_state SET day = {day}, as_of_date = to_timestamp({start})::DATE, "
            + ", ".join(f"seq_{table} = {seq[table]}" for table in TABLES)
        )
        con.execute("COMMIT")
        return result
    finally:
        con.close()
