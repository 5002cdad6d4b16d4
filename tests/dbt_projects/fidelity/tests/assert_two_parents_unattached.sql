select * from {{ ref('stg_orders') }} cross join {{ ref('stg_payments') }} where false
