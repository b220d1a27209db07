-- churn_score is a probability-like risk: it must stay within [0, 1].
select account_id, churn_score
from {{ ref('crm_customer_scores') }}
where churn_score < 0 or churn_score > 1
