select o.order_id, p.amount
from {{ ref('stg_helper') }} o
left join {{ ref('stg_payments') }} p on p.order_id = o.order_id
left join {{ ref('util_pkg', 'stg_orders') }} u on u.order_id = o.order_id
