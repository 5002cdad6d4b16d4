select
    id as payment_id,
    order_id,
    payment_method,
    -- The provider exports cents; everything downstream works in currency units.
    amount / 100.0 as amount
from {{ ref('raw_payments') }}
